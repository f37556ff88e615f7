//! Timestamps stored as fixed-width RFC 3339 text, so text order is time order.

use agentd_wire::Timestamp;
use chrono::SecondsFormat;

/// Now, at the precision the store keeps, so an event reads back exactly as its append
/// returned it.
pub fn now() -> Timestamp {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

pub fn fmt(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse(s: &str) -> rusqlite::Result<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

pub fn parse_opt(s: Option<String>) -> rusqlite::Result<Option<Timestamp>> {
    s.as_deref().map(parse).transpose()
}
