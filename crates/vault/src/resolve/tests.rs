//! The resolver against a real SQLite store and a loopback OAuth token endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{TimeDelta, Utc};

use agentd_catalog::{Keys, StoredCredential, Vaults};
use agentd_wire::vault::{
    Credential, CredentialAuth, CredentialNetworking, CredentialTag, InjectionLocation,
    OAuthRefresh, TokenEndpointAuth, Vault, VaultTag,
};

use super::*;
use crate::{Key, Reach, Secret, Secrets};

/// What the token endpoint does and what it saw.
#[derive(Default)]
struct Endpoint {
    status: u16,
    /// The refresh token it accepts, and the pair it hands out for it.
    accepts: String,
    issues: (String, String),
    seen: Vec<(HashMap<String, String>, Option<String>)>,
}

type Shared = Arc<Mutex<Endpoint>>;

async fn token(State(ep): State<Shared>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut ep = ep.lock().unwrap();
    ep.seen.push((form.clone(), auth));
    if ep.status != 200 || form.get("refresh_token") != Some(&ep.accepts) {
        let status = if ep.status == 200 { 400 } else { ep.status };
        return (
            StatusCode::from_u16(status).unwrap(),
            "{\"error\":\"invalid_grant\"}".to_owned(),
        );
    }
    let (access, refresh) = ep.issues.clone();
    ep.accepts = refresh.clone();
    let body = serde_json::json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": refresh,
    });
    (StatusCode::OK, body.to_string())
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<agentd_store::Store>,
    sealer: Sealer,
    resolver: Resolver,
    ws: String,
    vault: String,
    endpoint: Shared,
    token_url: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(agentd_store::Store::open(&dir.path().join("agentd.db")).unwrap());
    let ws = store.register_key("k", "default").await.unwrap().id;
    let vault = store
        .create_vault(
            &ws,
            Box::new(|id, now| Vault {
                id,
                kind: VaultTag::Vault,
                display_name: "v".into(),
                metadata: BTreeMap::new(),
                created_at: now,
                updated_at: now,
                archived_at: None,
            }),
        )
        .await
        .unwrap()
        .id;
    let endpoint = Shared::default();
    endpoint.lock().unwrap().status = 200;
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sealer = Sealer::new(&Key::generate());
    // The token endpoint is on loopback: opened as an operator would open a private range.
    let reach = Reach::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let resolver = Resolver::new(store.clone(), sealer.clone(), reach);
    World {
        _dir: dir,
        store,
        sealer,
        resolver,
        ws,
        vault,
        endpoint,
        token_url,
    }
}

impl World {
    async fn put(&self, auth: CredentialAuth, secrets: Secrets) -> StoredCredential {
        let (vault, sealer) = (self.vault.clone(), self.sealer.clone());
        self.store
            .create_credential(
                &self.ws,
                &self.vault,
                Box::new(move |id, now| {
                    let sealed = sealer.seal_secrets(&id, &secrets);
                    Ok(StoredCredential {
                        credential: Credential {
                            id,
                            kind: CredentialTag::VaultCredential,
                            vault_id: vault,
                            display_name: None,
                            auth,
                            metadata: BTreeMap::new(),
                            created_at: now,
                            updated_at: now,
                            archived_at: None,
                        },
                        sealed,
                    })
                }),
            )
            .await
            .unwrap()
    }

    /// An OAuth credential for `https://mcp.example/mcp` expiring in `expires_in`.
    async fn oauth(&self, expires_in: TimeDelta, auth: TokenEndpointAuth) -> StoredCredential {
        self.put(
            CredentialAuth::McpOauth {
                mcp_server_url: "https://mcp.example/mcp".into(),
                expires_at: Some(Utc::now() + expires_in),
                refresh: Some(OAuthRefresh {
                    client_id: "client-1".into(),
                    token_endpoint: self.token_url.clone(),
                    token_endpoint_auth: auth,
                    resource: Some("https://mcp.example/".into()),
                    scope: Some("read write".into()),
                }),
            },
            Secrets {
                access_token: Some(Secret::new("old-access")),
                refresh_token: Some(Secret::new("refresh-1")),
                client_secret: Some(Secret::new("client-secret")),
                ..Secrets::default()
            },
        )
        .await
    }

    fn endpoint_issues(&self, accepts: &str, access: &str, refresh: &str) {
        let mut ep = self.endpoint.lock().unwrap();
        ep.accepts = accepts.into();
        ep.issues = (access.into(), refresh.into());
    }

    fn vaults(&self) -> Vec<String> {
        vec![self.vault.clone()]
    }
}

#[tokio::test]
async fn a_bearer_credential_is_chosen_by_its_server_url() {
    let w = world().await;
    w.put(
        CredentialAuth::StaticBearer {
            mcp_server_url: "https://mcp.example/sse/".into(),
        },
        Secrets {
            token: Some(Secret::new("tok")),
            ..Secrets::default()
        },
    )
    .await;
    let got = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://MCP.example:443/sse")
        .await
        .unwrap()
        .expect("the same server, spelled differently");
    assert_eq!(got.authorization.expose(), "Bearer tok");
    let vaults = w.vaults();
    for other in [
        "https://mcp.example/other",
        "http://mcp.example/sse",
        "https://mcp.example:8443/sse",
        "https://evil.example/sse",
    ] {
        let none = w.resolver.mcp_authorization(&w.ws, &vaults, other);
        assert!(none.await.unwrap().is_none(), "{other}");
    }
    // Not for a session without the vault, nor from another workspace.
    let none = w
        .resolver
        .mcp_authorization(&w.ws, &[], "https://mcp.example/sse");
    assert!(none.await.unwrap().is_none());
    let none = w
        .resolver
        .mcp_authorization("wrkspc_other", &vaults, "https://mcp.example/sse");
    assert!(none.await.unwrap().is_none());
    // Nor once archived.
    w.store.archive_vault(&w.ws, &w.vault).await.unwrap();
    let none = w
        .resolver
        .mcp_authorization(&w.ws, &vaults, "https://mcp.example/sse");
    assert!(none.await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_and_stored_sealed() {
    let w = world().await;
    let c = w
        .oauth(TimeDelta::seconds(30), TokenEndpointAuth::ClientSecretPost)
        .await;
    w.endpoint_issues("refresh-1", "new-access", "refresh-2");
    let got = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://mcp.example/mcp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.authorization.expose(), "Bearer new-access");
    let (form, auth) = w.endpoint.lock().unwrap().seen[0].clone();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "refresh-1");
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["client_secret"], "client-secret");
    assert_eq!(form["scope"], "read write");
    assert_eq!(form["resource"], "https://mcp.example/");
    assert_eq!(auth, None);

    let stored = w
        .store
        .get_credential(&w.ws, &w.vault, &c.credential.id)
        .await
        .unwrap();
    let CredentialAuth::McpOauth { expires_at, .. } = &stored.credential.auth else {
        panic!("kind changed");
    };
    assert!(expires_at.unwrap() > Utc::now() + TimeDelta::minutes(59));
    for plain in [b"new-access".as_slice(), b"refresh-2"] {
        assert!(!stored.sealed.windows(plain.len()).any(|x| x == plain));
    }
    let s = w
        .sealer
        .open_secrets(&c.credential.id, &stored.sealed)
        .unwrap();
    assert_eq!(s.refresh_token, Some(Secret::new("refresh-2")));
    assert_eq!(s.client_secret, Some(Secret::new("client-secret")));

    // Fresh now: the next use does not refresh.
    let again = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://mcp.example/mcp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.authorization.expose(), "Bearer new-access");
    assert_eq!(w.endpoint.lock().unwrap().seen.len(), 1);
}

#[tokio::test]
async fn a_401_refreshes_once_with_basic_auth_and_the_rotated_token_is_used_next() {
    let w = world().await;
    w.oauth(TimeDelta::hours(1), TokenEndpointAuth::ClientSecretBasic)
        .await;
    let first = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://mcp.example/mcp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.authorization.expose(), "Bearer old-access");
    assert!(w.endpoint.lock().unwrap().seen.is_empty(), "not due yet");

    w.endpoint_issues("refresh-1", "access-2", "refresh-2");
    let second = w.resolver.after_unauthorized(&w.ws, &first).await.unwrap();
    assert_eq!(second.authorization.expose(), "Bearer access-2");
    // A second caller holding the refused value gets the new one without another exchange.
    let third = w.resolver.after_unauthorized(&w.ws, &first).await.unwrap();
    assert_eq!(third.authorization.expose(), "Bearer access-2");
    let seen = w.endpoint.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 1);
    let (form, auth) = &seen[0];
    assert!(!form.contains_key("client_secret"));
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "client-1:client-secret",
    );
    assert_eq!(auth.as_deref(), Some(format!("Basic {basic}").as_str()));

    w.endpoint_issues("refresh-2", "access-3", "refresh-3");
    let fourth = w.resolver.after_unauthorized(&w.ws, &second).await.unwrap();
    assert_eq!(fourth.authorization.expose(), "Bearer access-3");
    assert_eq!(
        w.endpoint.lock().unwrap().seen[1].0["refresh_token"],
        "refresh-2"
    );
}

#[tokio::test]
async fn a_failed_refresh_is_a_clear_error_that_names_no_secret_and_keeps_the_tokens() {
    let w = world().await;
    let c = w
        .oauth(TimeDelta::seconds(-5), TokenEndpointAuth::None)
        .await;
    w.endpoint.lock().unwrap().status = 401;
    let err = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://mcp.example/mcp")
        .await
        .unwrap_err();
    let ResolveError::Refresh(e) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(e.credential_id, c.credential.id);
    assert!(matches!(e.failure, RefreshFailure::Status(401)));
    let text = format!("{err} {err:?}");
    assert!(
        text.contains(&c.credential.id) && text.contains("HTTP 401"),
        "{text}"
    );
    for secret in ["old-access", "refresh-1", "client-secret"] {
        assert!(!text.contains(secret), "{text}");
    }
    let (form, _) = w.endpoint.lock().unwrap().seen[0].clone();
    assert_eq!(form["client_id"], "client-1");
    let kept = w
        .store
        .get_credential(&w.ws, &w.vault, &c.credential.id)
        .await
        .unwrap();
    assert_eq!(kept, c, "nothing stored on failure");

    // An unreachable endpoint is a connect failure; a credential without refresh says so.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    w.store
        .update_credential(
            &w.ws,
            &w.vault,
            &c.credential.id,
            Box::new(move |s| {
                if let CredentialAuth::McpOauth {
                    refresh: Some(r), ..
                } = &mut s.credential.auth
                {
                    r.token_endpoint = url;
                }
                Ok(())
            }),
        )
        .await
        .unwrap();
    let err = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://mcp.example/mcp")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ResolveError::Refresh(RefreshError {
                failure: RefreshFailure::Connect(_),
                ..
            })
        ),
        "{err:?}"
    );
    let bearer = w
        .put(
            CredentialAuth::StaticBearer {
                mcp_server_url: "https://static.example/".into(),
            },
            Secrets {
                token: Some(Secret::new("t")),
                ..Secrets::default()
            },
        )
        .await;
    let r = w
        .resolver
        .mcp_authorization(&w.ws, &w.vaults(), "https://static.example/")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.credential_id, bearer.credential.id);
    let err = w.resolver.after_unauthorized(&w.ws, &r).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ResolveError::Refresh(RefreshError {
                failure: RefreshFailure::NoRefreshToken,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_token_endpoint_out_of_reach_is_never_asked() {
    let w = world().await;
    let c = w
        .oauth(TimeDelta::seconds(-5), TokenEndpointAuth::None)
        .await;
    let closed = Resolver::new(w.store.clone(), w.sealer.clone(), Reach::default());
    let err = closed
        .mcp_authorization(&w.ws, &w.vaults(), "https://mcp.example/mcp")
        .await
        .unwrap_err();
    let ResolveError::Refresh(RefreshError {
        failure: RefreshFailure::Unreachable(why),
        credential_id,
        ..
    }) = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*credential_id, c.credential.id);
    assert!(why.contains("127.0.0.1"), "{why}");
    assert!(w.endpoint.lock().unwrap().seen.is_empty());
}

fn env_var(name: &str, net: CredentialNetworking) -> CredentialAuth {
    CredentialAuth::EnvironmentVariable {
        secret_name: name.into(),
        injection_location: InjectionLocation {
            body: false,
            header: true,
        },
        networking: net,
    }
}

fn value(v: &str) -> Secrets {
    Secrets {
        secret_value: Some(Secret::new(v)),
        ..Secrets::default()
    }
}

#[tokio::test]
async fn environment_secrets_are_opened_once_per_name_and_match_hosts_as_the_sdk_says() {
    let w = world().await;
    let limited = CredentialNetworking::Limited {
        allowed_hosts: vec!["api.example.com".into(), "*.example.org".into()],
    };
    w.put(env_var("API_TOKEN", limited), value("first")).await;
    w.put(
        env_var("OPEN", CredentialNetworking::Unrestricted),
        value("open"),
    )
    .await;
    // A second vault, later in the session's list, with the same name: the first one wins.
    let second = w
        .store
        .create_vault(
            &w.ws,
            Box::new(|id, now| Vault {
                id,
                kind: VaultTag::Vault,
                display_name: "second".into(),
                metadata: BTreeMap::new(),
                created_at: now,
                updated_at: now,
                archived_at: None,
            }),
        )
        .await
        .unwrap();
    let (vid, sealer) = (second.id.clone(), w.sealer.clone());
    w.store
        .create_credential(
            &w.ws,
            &second.id,
            Box::new(move |id, now| {
                let sealed = sealer.seal_secrets(&id, &value("second"));
                Ok(StoredCredential {
                    credential: Credential {
                        id,
                        kind: CredentialTag::VaultCredential,
                        vault_id: vid,
                        display_name: None,
                        auth: env_var("API_TOKEN", CredentialNetworking::Unrestricted),
                        metadata: BTreeMap::new(),
                        created_at: now,
                        updated_at: now,
                        archived_at: None,
                    },
                    sealed,
                })
            }),
        )
        .await
        .unwrap();
    let got = w
        .resolver
        .environment_secrets(&w.ws, &[w.vault.clone(), second.id.clone()])
        .await
        .unwrap();
    let mut names: Vec<_> = got
        .iter()
        .map(|e| (e.secret_name.as_str(), e.value.expose()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("API_TOKEN", "first"), ("OPEN", "open")]);
    let token = got.iter().find(|e| e.secret_name == "API_TOKEN").unwrap();
    assert!(token.applies_to("api.example.com") && token.applies_to("API.example.com."));
    assert!(token.applies_to("a.example.org") && token.applies_to("a.b.example.org"));
    assert!(
        !token.applies_to("example.org"),
        "a wildcard is for subdomains only"
    );
    assert!(!token.applies_to("badexample.org") && !token.applies_to("api.example.com.evil"));
    assert!(!token.applies_to("x.api.example.com"));
    let open = got.iter().find(|e| e.secret_name == "OPEN").unwrap();
    assert!(open.applies_to("anything.example"));

    let reversed = w
        .resolver
        .environment_secrets(&w.ws, &[second.id.clone(), w.vault.clone()])
        .await
        .unwrap();
    let token = reversed
        .iter()
        .find(|e| e.secret_name == "API_TOKEN")
        .unwrap();
    assert_eq!(token.value.expose(), "second");
    assert!(
        w.resolver
            .environment_secrets(&w.ws, &[])
            .await
            .unwrap()
            .is_empty()
    );
}
