//! One module per resource; each exposes `routes()`.

pub mod agents;
pub mod credentials;
pub mod environments;
pub mod events;
pub mod files;
pub mod resources;
pub mod sessions;
pub mod threads;
pub mod vaults;
pub mod work;

use serde::Serialize;

use agentd_wire::Page;

/// A list response in the SDK's cursor-page shape.
pub fn page<T, U: Serialize>(p: agentd_catalog::Page<T>, f: impl FnMut(T) -> U) -> Page<U> {
    Page {
        data: p.items.into_iter().map(f).collect(),
        next_page: p.next,
    }
}

/// `{"id": ..., "type": "<kind>_deleted"}`.
#[derive(Serialize)]
pub struct Deleted {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}
