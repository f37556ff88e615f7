//! YAML errors worded the same for every file agentd reads.

/// A YAML error as `file:line:column: message`, the position moved to the front.
pub(crate) fn error(name: &str, e: &yaml_serde::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
            format!("{name}:{}:{}: {msg}", loc.line(), loc.column())
        }
        None => format!("{name}: {msg}"),
    }
}
