//! What the model is told when it summarises older turns of its own context.

/// The system prompt of a compaction request; tests and scripted models recognise it.
pub const SYSTEM: &str = "You compact an agent's conversation: you write the summary that will \
replace its older turns in the agent's context, so the agent can go on without them.";

pub const INSTRUCTION: &str = "Summarise the conversation above for the agent that will continue \
it: the user's goals and instructions, decisions made and why, files and commands touched, facts \
learned, what is done, and what remains. Be complete about anything the agent still needs; leave \
out pleasantries. Reply with the summary only.";
