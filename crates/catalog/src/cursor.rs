//! The page cursors list endpoints hand out and take back, the same on every backend: a
//! cursor a backend did not return is refused, never compared as if it were one.

use crate::{Error, Result};

fn foreign(page: &str) -> Error {
    Error::Invalid(format!(
        "page: {page:?} is not a cursor this endpoint returned"
    ))
}

/// The cursor after event position `seq` (`pos_<seq>`).
pub fn of_position(seq: u64) -> String {
    format!("pos_{seq}")
}

/// The event position a `pos_<seq>` cursor names.
pub fn position(page: Option<&str>) -> Result<Option<u64>> {
    page.map(|p| {
        p.strip_prefix("pos_")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| foreign(p))
    })
    .transpose()
}

/// The agent version an agent-versions cursor names (the version number itself).
pub fn version(page: Option<&str>) -> Result<Option<u32>> {
    page.map(|p| p.parse().map_err(|_| foreign(p))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(position(Some(&of_position(7))).unwrap(), Some(7));
        assert_eq!(position(None).unwrap(), None);
        assert!(matches!(position(Some("7")), Err(Error::Invalid(_))));
        assert_eq!(version(Some("3")).unwrap(), Some(3));
        assert!(matches!(version(Some("pos_3")), Err(Error::Invalid(_))));
    }
}
