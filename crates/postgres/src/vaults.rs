//! Vaults and credentials: JSON bodies with the columns lists filter on, and each credential's
//! sealed secrets as opaque bytes.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use agentd_catalog::{
    CredentialEdit, CredentialMake, Error, Page, Reseal, Result, StoredCredential, VaultEdit,
    VaultMake, Vaults,
};
use agentd_wire::ids::{self, Kind};
use agentd_wire::vault::{Credential, Vault};

use crate::{Db, PgStore, fetch, json, log::now};

async fn get_vault(c: &impl GenericClient, ws: &str, id: &str, lock: &str) -> Result<Vault> {
    let sql = format!("SELECT body::text FROM vaults WHERE workspace_id = $1 AND id = $2 {lock}");
    let row = c
        .query_opt(&sql, &[&ws, &id])
        .await
        .db()?
        .ok_or_else(|| Error::NotFound(format!("vault {id} not found")))?;
    json(row.get(0))
}

async fn put_vault(c: &impl GenericClient, v: &Vault) -> Result<()> {
    c.execute(
        "UPDATE vaults SET body = $2::text::json, updated_at = $3, archived_at = $4 WHERE id = $1",
        &[
            &v.id,
            &serde_json::to_string(v)?,
            &v.updated_at,
            &v.archived_at,
        ],
    )
    .await
    .db()?;
    Ok(())
}

async fn get_cred(
    c: &impl GenericClient,
    ws: &str,
    vault: &str,
    id: &str,
    lock: &str,
) -> Result<StoredCredential> {
    let sql = format!(
        "SELECT body::text, sealed FROM vault_credentials WHERE workspace_id = $1 AND vault_id = $2 AND id = $3 {lock}"
    );
    let row = c
        .query_opt(&sql, &[&ws, &vault, &id])
        .await
        .db()?
        .ok_or_else(|| Error::NotFound(format!("credential {id} not found in vault {vault}")))?;
    Ok(StoredCredential {
        credential: json(row.get(0))?,
        sealed: row.get(1),
    })
}

async fn put_cred(c: &impl GenericClient, s: &StoredCredential) -> Result<()> {
    let cr = &s.credential;
    c.execute(
        "UPDATE vault_credentials SET body = $2::text::json, sealed = $3, updated_at = $4, archived_at = $5 WHERE id = $1",
        &[&cr.id, &serde_json::to_string(cr)?, &s.sealed, &cr.updated_at, &cr.archived_at],
    )
    .await
    .db()?;
    Ok(())
}

#[async_trait]
impl Vaults for PgStore {
    async fn create_vault(&self, ws: &str, make: VaultMake) -> Result<Vault> {
        let v = make(ids::new(Kind::Vault), now());
        self.client()
            .await?
            .execute(
                "INSERT INTO vaults (id, workspace_id, body, created_at, updated_at) VALUES ($1, $2, $3::text::json, $4, $4)",
                &[&v.id, &ws, &serde_json::to_string(&v)?, &v.created_at],
            )
            .await
            .db()?;
        Ok(v)
    }

    async fn get_vault(&self, ws: &str, id: &str) -> Result<Vault> {
        get_vault(&self.client().await?, ws, id, "").await
    }

    async fn update_vault(&self, ws: &str, id: &str, f: VaultEdit) -> Result<Vault> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let before = get_vault(&tx, ws, id, "FOR UPDATE").await?;
        if before.archived_at.is_some() {
            return Err(Error::Conflict(format!("vault {id} is archived")));
        }
        let mut v = before.clone();
        f(&mut v)?;
        if v != before {
            v.updated_at = now();
            put_vault(&tx, &v).await?;
        }
        tx.commit().await.db()?;
        Ok(v)
    }

    async fn archive_vault(&self, ws: &str, id: &str) -> Result<Vault> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let mut v = get_vault(&tx, ws, id, "FOR UPDATE").await?;
        if v.archived_at.is_none() {
            let at = now();
            v.archived_at = Some(at);
            v.updated_at = at;
            put_vault(&tx, &v).await?;
            let rows = tx
                .query(
                    "SELECT body::text FROM vault_credentials WHERE vault_id = $1 AND archived_at IS NULL FOR UPDATE",
                    &[&id],
                )
                .await
                .db()?;
            for r in rows {
                let mut cr: Credential = json(r.get(0))?;
                cr.archived_at = Some(at);
                cr.updated_at = at;
                put_cred(
                    &tx,
                    &StoredCredential {
                        credential: cr,
                        sealed: Vec::new(),
                    },
                )
                .await?;
            }
        }
        tx.commit().await.db()?;
        Ok(v)
    }

    async fn delete_vault(&self, ws: &str, id: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        get_vault(&tx, ws, id, "FOR UPDATE").await?;
        tx.execute("DELETE FROM vault_credentials WHERE vault_id = $1", &[&id])
            .await
            .db()?;
        tx.execute("DELETE FROM vaults WHERE id = $1", &[&id])
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn list_vaults(
        &self,
        ws: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Vault>> {
        self.list_bodies(
            "vaults",
            ws,
            include_archived,
            (limit, page),
            |x: &Vault| x.id.clone(),
        )
        .await
    }

    async fn create_credential(
        &self,
        ws: &str,
        vault: &str,
        make: CredentialMake,
    ) -> Result<StoredCredential> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        // Shared: an archive of the vault waits for this credential, then archives it too.
        if get_vault(&tx, ws, vault, "FOR SHARE")
            .await?
            .archived_at
            .is_some()
        {
            return Err(Error::Conflict(format!(
                "vault {vault} is archived; it takes no new credentials"
            )));
        }
        let s = make(ids::new(Kind::Credential), now())?;
        let cr = &s.credential;
        let inserted = tx
            .execute(
                "INSERT INTO vault_credentials (id, vault_id, workspace_id, match_key, body, sealed, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5::text::json, $6, $7, $7)",
                &[&cr.id, &vault, &ws, &s.match_key(), &serde_json::to_string(cr)?, &s.sealed, &cr.created_at],
            )
            .await;
        if let Err(e) = &inserted
            && e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        {
            return Err(Error::Conflict(format!(
                "vault {vault} already has a live credential for {}",
                s.match_key().split_once(':').map_or("", |(_, k)| k)
            )));
        }
        inserted.db()?;
        tx.commit().await.db()?;
        Ok(s)
    }

    async fn get_credential(&self, ws: &str, vault: &str, id: &str) -> Result<StoredCredential> {
        get_cred(&self.client().await?, ws, vault, id, "").await
    }

    async fn update_credential(
        &self,
        ws: &str,
        vault: &str,
        id: &str,
        f: CredentialEdit,
    ) -> Result<StoredCredential> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let before = get_cred(&tx, ws, vault, id, "FOR UPDATE").await?;
        if before.credential.archived_at.is_some() {
            return Err(Error::Conflict(format!("credential {id} is archived")));
        }
        let mut s = before.clone();
        f(&mut s)?;
        if s != before {
            s.credential.updated_at = now();
            put_cred(&tx, &s).await?;
        }
        tx.commit().await.db()?;
        Ok(s)
    }

    async fn archive_credential(
        &self,
        ws: &str,
        vault: &str,
        id: &str,
    ) -> Result<StoredCredential> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let mut s = get_cred(&tx, ws, vault, id, "FOR UPDATE").await?;
        if s.credential.archived_at.is_none() {
            let at = now();
            s.credential.archived_at = Some(at);
            s.credential.updated_at = at;
            s.sealed = Vec::new();
            put_cred(&tx, &s).await?;
        }
        tx.commit().await.db()?;
        Ok(s)
    }

    async fn delete_credential(&self, ws: &str, vault: &str, id: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        get_cred(&tx, ws, vault, id, "FOR UPDATE").await?;
        tx.execute("DELETE FROM vault_credentials WHERE id = $1", &[&id])
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn list_credentials(
        &self,
        ws: &str,
        vault: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<StoredCredential>> {
        let c = self.client().await?;
        get_vault(&c, ws, vault, "").await?;
        let rows = c
            .query(
                "SELECT body::text, sealed FROM vault_credentials WHERE vault_id = $1 AND ($2 OR archived_at IS NULL)
                 AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                &[&vault, &include_archived, &page, &fetch(limit)],
            )
            .await
            .db()?;
        let out = rows
            .iter()
            .map(|r| {
                Ok(StoredCredential {
                    credential: json(r.get(0))?,
                    sealed: r.get(1),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::of(out, limit, |s| s.credential.id.clone()))
    }

    async fn vault_key_check(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .client()
            .await?
            .query_opt("SELECT check_value FROM vault_key WHERE id = 1", &[])
            .await
            .db()?
            .map(|r| r.get(0)))
    }

    async fn init_vault_key_check(&self, check: Vec<u8>) -> Result<Vec<u8>> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO vault_key (id, check_value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&check],
        )
        .await
        .db()?;
        Ok(
            c.query_one("SELECT check_value FROM vault_key WHERE id = 1", &[])
                .await
                .db()?
                .get(0),
        )
    }

    async fn reseal_credentials(&self, mut f: Reseal, check: Vec<u8>) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        // The key row first: two rotations at once take turns.
        tx.execute("SELECT 1 FROM vault_key WHERE id = 1 FOR UPDATE", &[])
            .await
            .db()?;
        let rows = tx
            .query(
                "SELECT id, sealed FROM vault_credentials WHERE length(sealed) > 0 FOR UPDATE",
                &[],
            )
            .await
            .db()?;
        let mut n = 0;
        for r in rows {
            let id: String = r.get(0);
            let sealed: Vec<u8> = r.get(1);
            let new = f(&id, &sealed)?;
            tx.execute(
                "UPDATE vault_credentials SET sealed = $2 WHERE id = $1",
                &[&id, &new],
            )
            .await
            .db()?;
            n += 1;
        }
        let tokens = tx
            .query(
                "SELECT resource_id, sealed FROM resource_secrets FOR UPDATE",
                &[],
            )
            .await
            .db()?;
        for r in tokens {
            let id: String = r.get(0);
            let sealed: Vec<u8> = r.get(1);
            let new = f(&id, &sealed)?;
            tx.execute(
                "UPDATE resource_secrets SET sealed = $2 WHERE resource_id = $1",
                &[&id, &new],
            )
            .await
            .db()?;
            n += 1;
        }
        tx.execute(
            "INSERT INTO vault_key (id, check_value) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value",
            &[&check],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(n)
    }
}
