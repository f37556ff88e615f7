//! A session's resources as every backend keeps them: a list on the session, changed whole
//! under the session's row lock by these rules.

use agentd_wire::resource::Resource;

use crate::Error;

/// At most this many resources per session.
pub const MAX_PER_SESSION: usize = 100;

/// Add `r` to `list`: refused when its mount path is taken or the list is full.
pub fn add(list: &mut Vec<Resource>, r: Resource) -> Result<(), Error> {
    if list.len() >= MAX_PER_SESSION {
        return Err(Error::Invalid(format!(
            "a session has at most {MAX_PER_SESSION} resources; delete one first"
        )));
    }
    check_new(list, &r)?;
    list.push(r);
    Ok(())
}

/// Whether `r` can join `list`: no two resources share a mount path, nor does one sit inside
/// another's.
pub fn check_new(list: &[Resource], r: &Resource) -> Result<(), Error> {
    let p = r.mount_path();
    if let Some(o) = list.iter().find(|o| {
        let q = o.mount_path();
        q == p || p.starts_with(&format!("{q}/")) || q.starts_with(&format!("{p}/"))
    }) {
        return Err(Error::Invalid(format!(
            "mount_path: {p} collides with resource {} at {}",
            o.id(),
            o.mount_path()
        )));
    }
    Ok(())
}

/// Remove resource `id` from `list`.
pub fn remove(list: &mut Vec<Resource>, id: &str) -> Result<Resource, Error> {
    let i = list
        .iter()
        .position(|r| r.id() == id)
        .ok_or_else(|| Error::NotFound(format!("resource {id} not found in this session")))?;
    Ok(list.remove(i))
}

/// Resource `id` of `list` takes a new token now: only a repository has one.
pub fn retoken(
    list: &mut [Resource],
    id: &str,
    at: agentd_wire::Timestamp,
) -> Result<Resource, Error> {
    let r = list
        .iter_mut()
        .find(|r| r.id() == id)
        .ok_or_else(|| Error::NotFound(format!("resource {id} not found in this session")))?;
    if !matches!(r, Resource::GithubRepository(_)) {
        return Err(Error::Invalid(format!(
            "authorization_token: resource {id} is a file; only github_repository resources take a token"
        )));
    }
    r.set_updated_at(at);
    Ok(r.clone())
}
