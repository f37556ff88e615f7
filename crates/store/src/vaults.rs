//! Vaults and credentials: JSON bodies with the columns lists filter on, and each credential's
//! sealed secrets as an opaque blob.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::{
    CredentialEdit, CredentialMake, Reseal, StoredCredential, VaultEdit, VaultMake, Vaults,
};
use agentd_wire::ids::{self, Kind};
use agentd_wire::vault::Vault;

use crate::{Error, Page, Result, Store, time};

pub(crate) fn get_vault_in(c: &Connection, ws: &str, id: &str) -> Result<Vault> {
    let body: String = c
        .query_row(
            "SELECT body FROM vaults WHERE workspace_id = ?1 AND id = ?2",
            params![ws, id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("vault {id} not found")))?;
    Ok(serde_json::from_str(&body)?)
}

fn put_vault(c: &Connection, v: &Vault) -> Result<()> {
    c.execute(
        "UPDATE vaults SET body = ?2, updated_at = ?3, archived_at = ?4 WHERE id = ?1",
        params![
            v.id,
            serde_json::to_string(v)?,
            time::fmt(&v.updated_at),
            v.archived_at.as_ref().map(time::fmt)
        ],
    )?;
    Ok(())
}

fn get_cred_in(c: &Connection, ws: &str, vault: &str, id: &str) -> Result<StoredCredential> {
    let row: Option<(String, Vec<u8>)> = c
        .query_row(
            "SELECT body, sealed FROM vault_credentials WHERE workspace_id = ?1 AND vault_id = ?2 AND id = ?3",
            params![ws, vault, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (body, sealed) =
        row.ok_or_else(|| Error::NotFound(format!("credential {id} not found in vault {vault}")))?;
    Ok(StoredCredential {
        credential: serde_json::from_str(&body)?,
        sealed,
    })
}

fn put_cred(c: &Connection, s: &StoredCredential) -> Result<()> {
    let cr = &s.credential;
    c.execute(
        "UPDATE vault_credentials SET body = ?2, sealed = ?3, updated_at = ?4, archived_at = ?5 WHERE id = ?1",
        params![
            cr.id,
            serde_json::to_string(cr)?,
            s.sealed,
            time::fmt(&cr.updated_at),
            cr.archived_at.as_ref().map(time::fmt)
        ],
    )?;
    Ok(())
}

fn duplicate(e: rusqlite::Error, s: &StoredCredential) -> Error {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
        return Error::Conflict(format!(
            "vault {} already has a live credential for {}",
            s.credential.vault_id,
            s.match_key().split_once(':').map_or("", |(_, k)| k)
        ));
    }
    e.into()
}

/// Archive every live credential of `vault` at `now`, dropping their secrets.
fn archive_creds_of(c: &Connection, vault: &str, now: &str) -> Result<()> {
    let rows: Vec<(String, String)> = c
        .prepare(
            "SELECT id, body FROM vault_credentials WHERE vault_id = ?1 AND archived_at IS NULL",
        )?
        .query_map([vault], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, body) in rows {
        let mut cr: agentd_wire::vault::Credential = serde_json::from_str(&body)?;
        let at = time::parse(now)?;
        cr.archived_at = Some(at);
        cr.updated_at = at;
        put_cred(
            c,
            &StoredCredential {
                credential: cr,
                sealed: Vec::new(),
            },
        )?;
        debug_assert!(!id.is_empty());
    }
    Ok(())
}

#[async_trait]
impl Vaults for Store {
    async fn create_vault(&self, ws: &str, make: VaultMake) -> Result<Vault> {
        let ws = ws.to_owned();
        self.db
            .write(move |c| {
                let v = make(ids::new(Kind::Vault), time::now());
                let now = time::fmt(&v.created_at);
                c.execute(
                    "INSERT INTO vaults (id, workspace_id, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![v.id, ws, serde_json::to_string(&v)?, now],
                )?;
                Ok(v)
            })
            .await
    }

    async fn get_vault(&self, ws: &str, id: &str) -> Result<Vault> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db.read(move |c| get_vault_in(c, &ws, &id)).await
    }

    async fn update_vault(&self, ws: &str, id: &str, f: VaultEdit) -> Result<Vault> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let before = get_vault_in(c, &ws, &id)?;
                if before.archived_at.is_some() {
                    return Err(Error::Conflict(format!("vault {id} is archived")));
                }
                let mut v = before.clone();
                f(&mut v)?;
                if v != before {
                    v.updated_at = time::now();
                    put_vault(c, &v)?;
                }
                Ok(v)
            })
            .await
    }

    async fn archive_vault(&self, ws: &str, id: &str) -> Result<Vault> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let mut v = get_vault_in(c, &ws, &id)?;
                if v.archived_at.is_none() {
                    let now = time::now();
                    v.archived_at = Some(now);
                    v.updated_at = now;
                    put_vault(c, &v)?;
                    archive_creds_of(c, &id, &time::fmt(&now))?;
                }
                Ok(v)
            })
            .await
    }

    async fn delete_vault(&self, ws: &str, id: &str) -> Result<()> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                get_vault_in(c, &ws, &id)?;
                c.execute("DELETE FROM vault_credentials WHERE vault_id = ?1", [&id])?;
                c.execute("DELETE FROM vaults WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn list_vaults(
        &self,
        ws: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Vault>> {
        let ws = ws.to_owned();
        self.db
            .read(move |c| {
                crate::list_bodies(
                    c,
                    "vaults",
                    &ws,
                    include_archived,
                    (limit, page),
                    |x: &Vault| x.id.clone(),
                )
            })
            .await
    }

    async fn create_credential(
        &self,
        ws: &str,
        vault: &str,
        make: CredentialMake,
    ) -> Result<StoredCredential> {
        let (ws, vault) = (ws.to_owned(), vault.to_owned());
        self.db
            .write(move |c| {
                if get_vault_in(c, &ws, &vault)?.archived_at.is_some() {
                    return Err(Error::Conflict(format!(
                        "vault {vault} is archived; it takes no new credentials"
                    )));
                }
                let s = make(ids::new(Kind::Credential), time::now())?;
                let cr = &s.credential;
                debug_assert_eq!(cr.vault_id, vault);
                let now = time::fmt(&cr.created_at);
                c.execute(
                    "INSERT INTO vault_credentials (id, vault_id, workspace_id, match_key, body, sealed, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    params![cr.id, vault, ws, s.match_key(), serde_json::to_string(cr)?, s.sealed, now],
                )
                .map_err(|e| duplicate(e, &s))?;
                Ok(s)
            })
            .await
    }

    async fn get_credential(&self, ws: &str, vault: &str, id: &str) -> Result<StoredCredential> {
        let (ws, vault, id) = (ws.to_owned(), vault.to_owned(), id.to_owned());
        self.db
            .read(move |c| get_cred_in(c, &ws, &vault, &id))
            .await
    }

    async fn update_credential(
        &self,
        ws: &str,
        vault: &str,
        id: &str,
        f: CredentialEdit,
    ) -> Result<StoredCredential> {
        let (ws, vault, id) = (ws.to_owned(), vault.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let before = get_cred_in(c, &ws, &vault, &id)?;
                if before.credential.archived_at.is_some() {
                    return Err(Error::Conflict(format!("credential {id} is archived")));
                }
                let mut s = before.clone();
                f(&mut s)?;
                if s != before {
                    s.credential.updated_at = time::now();
                    put_cred(c, &s)?;
                }
                Ok(s)
            })
            .await
    }

    async fn archive_credential(
        &self,
        ws: &str,
        vault: &str,
        id: &str,
    ) -> Result<StoredCredential> {
        let (ws, vault, id) = (ws.to_owned(), vault.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let mut s = get_cred_in(c, &ws, &vault, &id)?;
                if s.credential.archived_at.is_none() {
                    let now = time::now();
                    s.credential.archived_at = Some(now);
                    s.credential.updated_at = now;
                    s.sealed = Vec::new();
                    put_cred(c, &s)?;
                }
                Ok(s)
            })
            .await
    }

    async fn delete_credential(&self, ws: &str, vault: &str, id: &str) -> Result<()> {
        let (ws, vault, id) = (ws.to_owned(), vault.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                get_cred_in(c, &ws, &vault, &id)?;
                c.execute("DELETE FROM vault_credentials WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn list_credentials(
        &self,
        ws: &str,
        vault: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<StoredCredential>> {
        let (ws, vault) = (ws.to_owned(), vault.to_owned());
        self.db
            .read(move |c| {
                get_vault_in(c, &ws, &vault)?;
                let mut st = c.prepare_cached(
                    "SELECT body, sealed FROM vault_credentials WHERE vault_id = ?1 AND (?2 OR archived_at IS NULL)
                     AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4",
                )?;
                let rows = st.query_map(
                    params![vault, include_archived, page, (limit + 1) as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
                )?;
                let mut out = Vec::new();
                for r in rows {
                    let (body, sealed) = r?;
                    out.push(StoredCredential {
                        credential: serde_json::from_str(&body)?,
                        sealed,
                    });
                }
                Ok(Page::of(out, limit, |s| s.credential.id.clone()))
            })
            .await
    }

    async fn vault_key_check(&self) -> Result<Option<Vec<u8>>> {
        self.db
            .read(|c| {
                Ok(
                    c.query_row("SELECT check_value FROM vault_key WHERE id = 1", [], |r| {
                        r.get(0)
                    })
                    .optional()?,
                )
            })
            .await
    }

    async fn init_vault_key_check(&self, check: Vec<u8>) -> Result<Vec<u8>> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO vault_key (id, check_value) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
                    [&check],
                )?;
                Ok(c.query_row("SELECT check_value FROM vault_key WHERE id = 1", [], |r| {
                    r.get(0)
                })?)
            })
            .await
    }

    async fn reseal_credentials(&self, mut f: Reseal, check: Vec<u8>) -> Result<u64> {
        self.db
            .write(move |c| {
                let rows: Vec<(String, Vec<u8>)> = c
                    .prepare("SELECT id, sealed FROM vault_credentials WHERE length(sealed) > 0")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut n = 0;
                for (id, sealed) in rows {
                    let new = f(&id, &sealed)?;
                    c.execute(
                        "UPDATE vault_credentials SET sealed = ?2 WHERE id = ?1",
                        params![id, new],
                    )?;
                    n += 1;
                }
                let tokens: Vec<(String, Vec<u8>)> = c
                    .prepare("SELECT resource_id, sealed FROM resource_secrets")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                for (id, sealed) in tokens {
                    let new = f(&id, &sealed)?;
                    c.execute(
                        "UPDATE resource_secrets SET sealed = ?2 WHERE resource_id = ?1",
                        params![id, new],
                    )?;
                    n += 1;
                }
                c.execute(
                    "INSERT INTO vault_key (id, check_value) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value",
                    [&check],
                )?;
                Ok(n)
            })
            .await
    }
}
