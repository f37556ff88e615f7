//! How many sandboxes may exist at once: on this server, and over one session's workspace.
//! A slot is taken before a sandbox is provisioned and held until it is released, so a flood
//! of sessions is refused at the cap — with an error the model reads — instead of piling up
//! processes until the host gives out. (`Sandboxes` first releases an idle sandbox to make
//! room; only sandboxes at work hold a newcomer off.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The caps; 0 for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Sandboxes on this server.
    pub total: usize,
    /// Sandboxes over one session's workspace (its primary thread's and its workers').
    pub per_workspace: usize,
}

impl Caps {
    pub const NONE: Caps = Caps {
        total: 0,
        per_workspace: 0,
    };
}

/// Slots taken, by workspace.
#[derive(Default)]
struct Held {
    total: usize,
    by_workspace: HashMap<String, usize>,
}

pub(crate) struct Admission {
    caps: Caps,
    held: Arc<Mutex<Held>>,
}

/// One sandbox's place under the caps; given back when dropped.
pub(crate) struct Slot {
    workspace: String,
    held: Arc<Mutex<Held>>,
}

impl Admission {
    pub(crate) fn new(caps: Caps) -> Self {
        Admission {
            caps,
            held: Arc::default(),
        }
    }

    /// A slot for a new sandbox over `workspace`, or why there is none: a sentence the model
    /// can act on.
    pub(crate) fn take(&self, workspace: &str) -> Result<Slot, String> {
        let mut held = lock(&self.held);
        let here = held.by_workspace.get(workspace).copied().unwrap_or(0);
        let Caps {
            total,
            per_workspace,
        } = self.caps;
        if per_workspace > 0 && here >= per_workspace {
            return Err(format!(
                "this session already has {here} sandboxes running (one per thread using tools), the most the server allows; wait for other threads of this session to finish their tool calls, then try again"
            ));
        }
        if total > 0 && held.total >= total {
            return Err(format!(
                "the server is running {} sandboxes, the most it allows at once; try again later, or carry on without tools meanwhile",
                held.total
            ));
        }
        held.total += 1;
        *held.by_workspace.entry(workspace.to_owned()).or_default() += 1;
        Ok(Slot {
            workspace: workspace.to_owned(),
            held: self.held.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_workspace.get_mut(&self.workspace) {
            *n -= 1;
            if *n == 0 {
                held.by_workspace.remove(&self.workspace);
            }
        }
    }
}

fn lock(m: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_refuse_the_next_sandbox_and_a_release_makes_room() {
        let a = Admission::new(Caps {
            total: 3,
            per_workspace: 2,
        });
        let s1 = a.take("a").unwrap();
        let _s2 = a.take("a").unwrap();
        let e = a.take("a").err().unwrap();
        assert!(e.contains("this session already has 2 sandboxes"), "{e}");
        let _s3 = a.take("b").unwrap();
        let e = a.take("c").err().unwrap();
        assert!(e.contains("running 3 sandboxes"), "{e}");
        drop(s1);
        assert!(a.take("c").is_ok());
    }

    #[test]
    fn no_caps_refuse_nothing() {
        let a = Admission::new(Caps::NONE);
        let slots: Vec<Slot> = (0..1000).map(|_| a.take("a").unwrap()).collect();
        assert_eq!(slots.len(), 1000);
    }
}
