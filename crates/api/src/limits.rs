//! The limits the SDK documents for request fields. A request over one is refused whole, with
//! the field and the limit named, rather than cut or stored as sent.

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult};

/// Metadata pairs on an agent or a session.
pub const METADATA_PAIRS: usize = 16;
pub const METADATA_KEY_CHARS: usize = 64;
pub const METADATA_VALUE_CHARS: usize = 512;
/// Tools across all of an agent's toolsets.
pub const TOOLS: usize = 256;
/// A custom tool's name.
pub const TOOL_NAME_CHARS: usize = 128;
/// Events in a session create's `initial_events`.
pub const INITIAL_EVENTS: usize = 50;
/// Vaults one session may name.
pub const SESSION_VAULTS: usize = 16;
/// A system prompt given as a session's agent override.
pub const SYSTEM_CHARS: usize = 100_000;

/// `field` holds at most 16 pairs, keys of 1 to 64 characters and values of at most 512.
pub fn metadata(field: &str, m: &BTreeMap<String, String>) -> ApiResult<()> {
    if m.len() > METADATA_PAIRS {
        return Err(ApiError::invalid(format!(
            "{field}: {} pairs is over the limit of {METADATA_PAIRS}",
            m.len()
        )));
    }
    for (k, v) in m {
        let n = k.chars().count();
        if n == 0 || n > METADATA_KEY_CHARS {
            return Err(ApiError::invalid(format!(
                "{field}: key {k:?} must be 1 to {METADATA_KEY_CHARS} characters, not {n}"
            )));
        }
        let n = v.chars().count();
        if n > METADATA_VALUE_CHARS {
            return Err(ApiError::invalid(format!(
                "{field}.{k}: the value is {n} characters, over the limit of {METADATA_VALUE_CHARS}"
            )));
        }
    }
    Ok(())
}

/// `field` holds at most `max` entries.
pub fn count(field: &str, n: usize, max: usize) -> ApiResult<()> {
    if n > max {
        return Err(ApiError::invalid(format!(
            "{field}: {n} entries is over the limit of {max}"
        )));
    }
    Ok(())
}
