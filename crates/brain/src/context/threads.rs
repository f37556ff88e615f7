//! Threads as one thread's log tells them: the workers it started and which owe a reply, the
//! messages other threads sent it (held until the conversation has a gap for them), and —
//! for a worker — what it owes the coordinator that gave it work.

use agentd_models::Block;
use agentd_wire::ContentBlock;

use super::builder::{Builder, to_block};
use super::{Child, Reply};

#[derive(Default)]
pub(super) struct Threads {
    pub(super) children: Vec<Child>,
    /// A thread message is input the model has not seen yet.
    pub(super) replies_pending: bool,
    /// The user interrupted: replies from threads no longer start a turn by themselves.
    pub(super) stopped: bool,
    pub(super) reply: Reply,
    pub(super) owes_reply: bool,
}

impl Threads {
    /// `agent.thread_message_received`: a worker's reply, or work from the coordinator. It
    /// joins the conversation now only if no request and no tool call is open.
    pub(super) fn received(
        &mut self,
        b: &mut Builder,
        span_open: bool,
        from_thread: &str,
        from_agent: Option<&str>,
        content: &[ContentBlock],
    ) {
        match from_agent {
            // A worker's reply, named so the coordinator can tell its workers apart.
            Some(name) => b.held.push(Block::Text {
                text: format!(
                    "Message from thread {from_thread} (agent `{name}`):\n{}",
                    ContentBlock::join_text(content)
                ),
            }),
            // Work from the coordinator, which is this thread's user.
            None => b.held.extend(content.iter().map(to_block)),
        }
        if let Some(c) = self.children.iter_mut().find(|c| c.id == from_thread) {
            c.busy = false;
        }
        if !span_open && b.open_tools.is_empty() {
            b.flush_held();
        }
        self.replies_pending = true;
        if from_agent.is_none() {
            // New work from the coordinator; a follow-up that comes before the worker
            // answered adds to what it owes, it does not erase what it said.
            self.stopped = false;
            self.owes_reply = true;
        }
    }

    pub(super) fn created(&mut self, id: &str, agent_name: &str) {
        self.children.push(Child {
            id: id.to_owned(),
            agent_name: agent_name.to_owned(),
            busy: true,
        });
    }

    /// `agent.thread_message_sent`: work for a child, or a worker's reply to its coordinator.
    pub(super) fn sent(&mut self, to_thread: &str, to_agent: Option<&str>) {
        if let Some(c) = self.children.iter_mut().find(|c| c.id == to_thread) {
            c.busy = true;
        }
        if to_agent.is_none() {
            // A worker's reply to its coordinator: the next one starts afresh.
            self.owes_reply = false;
            self.reply = Reply::default();
        }
    }

    /// The user spoke: replies start turns again, and what this thread has to say starts over.
    pub(super) fn user_message(&mut self) {
        self.stopped = false;
        self.reply = Reply::default();
    }

    pub(super) fn interrupted(&mut self) {
        self.stopped = true;
        self.replies_pending = false;
        self.reply.interrupted = true;
    }

    pub(super) fn agent_message(&mut self, content: &[ContentBlock]) {
        if !self.reply.text.is_empty() {
            self.reply.text.push('\n');
        }
        self.reply.text.push_str(&ContentBlock::join_text(content));
    }

    pub(super) fn busy(&self) -> bool {
        self.children.iter().any(|c| c.busy)
    }
}
