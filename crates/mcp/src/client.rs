//! Connections to MCP servers, one per (session, server), made on first use and kept in
//! memory: the tool list is fetched once per connection, calls go over it under a timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_egress::Policy;
use agentd_wire::ContentBlock;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value};

use crate::auth::McpAuth;
use crate::error::Error;
use crate::http::AuthedHttp;

/// Most tools one server may list.
const MAX_TOOLS: usize = 512;
/// Most bytes of names, descriptions and input schemas one server's tools may take.
const MAX_TOOL_BYTES: usize = 4 << 20;

/// How long and how much an MCP server may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connecting, the MCP handshake and listing the tools, together.
    pub connect_timeout: Duration,
    /// One tool call.
    pub call_timeout: Duration,
    /// The most bytes of content one call may return.
    pub max_result_bytes: usize,
    /// A connection unused this long is closed when next noticed.
    pub idle: Duration,
    /// After a server failed to connect or list, how long it is not tried again: a turn does
    /// not wait on a server that is down (or blackholed) again and again.
    pub retry_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(15),
            call_timeout: Duration::from_secs(60),
            max_result_bytes: 1 << 20,
            idle: Duration::from_secs(30 * 60),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// An agent's MCP server, as its spec names it.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub name: &'a str,
    pub url: &'a str,
}

/// A tool an MCP server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// What a call returned: the server's content, and whether it says the tool failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    pub content: Vec<ContentBlock>,
    pub is_error: bool,
}

struct Conn {
    service: RunningService<RoleClient, ()>,
    tools: Vec<ToolInfo>,
    /// A response broke on the transport's size bound (see `AuthedHttp::too_large`).
    too_large: Arc<std::sync::atomic::AtomicBool>,
}

/// (session, server name, server URL).
type Key = (String, String, String);

/// The MCP client of one agentd process.
pub struct Mcp {
    auth: Arc<dyn McpAuth>,
    limits: Limits,
    conns: Mutex<HashMap<Key, (Arc<Conn>, Instant)>>,
    /// Servers whose last connection attempt failed, with when.
    failed: Mutex<HashMap<Key, (Error, Instant)>>,
}

impl Mcp {
    pub fn new(auth: Arc<dyn McpAuth>, limits: Limits) -> Mcp {
        // rmcp's reqwest takes TLS from the process's provider: ring, as the rest of agentd.
        // Already installed (by whoever came first) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Mcp {
            auth,
            limits,
            conns: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The tools `server` offers to session `session_id`: listed when the session first
    /// needs them, then kept for as long as the connection lives.
    pub async fn tools(
        &self,
        session_id: &str,
        server: Server<'_>,
        policy: &Policy,
    ) -> Result<Vec<ToolInfo>, Error> {
        Ok(self.conn(session_id, server, policy).await?.tools.clone())
    }

    /// Call `tool` of `server` with `args`, under the call timeout and the result cap.
    pub async fn call(
        &self,
        session_id: &str,
        server: Server<'_>,
        policy: &Policy,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<CallResult, Error> {
        let conn = self.conn(session_id, server, policy).await?;
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        let secs = self.limits.call_timeout.as_secs();
        let res =
            match tokio::time::timeout(self.limits.call_timeout, conn.service.call_tool(params))
                .await
            {
                Err(_) => {
                    // What the server does with the abandoned request is its business; the
                    // next call starts on a fresh connection rather than behind it.
                    self.forget_one(session_id, server);
                    return Err(Error::Timeout {
                        server: server.name.to_owned(),
                        secs,
                    });
                }
                Ok(Err(e)) => {
                    let mut err = classify(server, &e, self.limits.max_result_bytes);
                    if conn.too_large.load(std::sync::atomic::Ordering::SeqCst) {
                        err = Error::TooLarge {
                            server: server.name.to_owned(),
                            bytes: self.transport_bound(),
                            cap: self.limits.max_result_bytes,
                        };
                    }
                    if !matches!(err, Error::Server { .. }) {
                        self.forget_one(session_id, server);
                    }
                    return Err(err);
                }
                Ok(Ok(r)) => r,
            };
        let content: Vec<Value> = res
            .content
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        crate::content::convert(
            server.name,
            &content,
            res.structured_content.as_ref(),
            res.is_error.unwrap_or(false),
            self.limits.max_result_bytes,
        )
    }

    /// Close the connections unused for `Limits::idle` (the server runs this every minute).
    pub fn sweep(&self) {
        let idle = self.limits.idle;
        self.lock().retain(|_, (_, used)| used.elapsed() < idle);
        let rest = self.limits.retry_after;
        lock(&self.failed).retain(|_, (_, at)| at.elapsed() < rest);
    }

    /// Close every connection of session `session_id` (archived, deleted).
    pub fn forget(&self, session_id: &str) {
        self.lock().retain(|k, _| k.0 != session_id);
        lock(&self.failed).retain(|k, _| k.0 != session_id);
    }

    fn forget_one(&self, session_id: &str, server: Server<'_>) {
        self.lock().remove(&key(session_id, server));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Arc<Conn>, Instant)>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn conn(
        &self,
        session_id: &str,
        server: Server<'_>,
        policy: &Policy,
    ) -> Result<Arc<Conn>, Error> {
        let k = key(session_id, server);
        {
            let now = Instant::now();
            let mut conns = self.lock();
            conns.retain(|_, (_, used)| now.duration_since(*used) < self.limits.idle);
            if let Some((c, used)) = conns.get_mut(&k) {
                *used = now;
                return Ok(c.clone());
            }
        }
        if let Some((e, at)) = lock(&self.failed).get(&k)
            && at.elapsed() < self.limits.retry_after
        {
            return Err(Error::Unavailable {
                server: server.name.to_owned(),
                secs: (self.limits.retry_after - at.elapsed()).as_secs() + 1,
                last: Box::new(e.clone()),
            });
        }
        let made = match tokio::time::timeout(
            self.limits.connect_timeout,
            self.connect(session_id, server, policy),
        )
        .await
        {
            Ok(c) => c,
            Err(_) => Err(Error::Timeout {
                server: server.name.to_owned(),
                secs: self.limits.connect_timeout.as_secs(),
            }),
        };
        match made {
            Ok(c) => {
                let c = Arc::new(c);
                lock(&self.failed).remove(&k);
                self.lock().insert(k, (c.clone(), Instant::now()));
                Ok(c)
            }
            Err(e) => {
                lock(&self.failed).insert(k, (e.clone(), Instant::now()));
                Err(e)
            }
        }
    }

    async fn connect(
        &self,
        session_id: &str,
        server: Server<'_>,
        policy: &Policy,
    ) -> Result<Conn, Error> {
        let (host, addrs) = check(server, policy).await?;
        let connect_err = |why: String| Error::Connect {
            server: server.name.to_owned(),
            url: server.url.to_owned(),
            why,
        };
        // The addresses checked are the ones connected to: a second lookup could answer
        // differently (DNS rebinding).
        // No system proxy: the addresses checked must be the ones connected to.
        let mut http = reqwest13::Client::builder()
            .no_proxy()
            .redirect(reqwest13::redirect::Policy::none())
            .connect_timeout(self.limits.connect_timeout);
        if host.parse::<IpAddr>().is_err() {
            http = http.resolve_to_addrs(&host, &addrs);
        }
        let http = http.build().map_err(|e| connect_err(e.to_string()))?;
        let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let auth_failure: Arc<Mutex<Option<String>>> = Arc::default();
        let client = AuthedHttp {
            http,
            auth: self.auth.clone(),
            session_id: session_id.into(),
            url: server.url.into(),
            too_large: too_large.clone(),
            auth_failure: auth_failure.clone(),
        };
        let mut cfg = StreamableHttpClientTransportConfig::with_uri(server.url);
        // A huge result is refused by the cap after decoding; the transport's own bound only
        // keeps a runaway body from filling memory first.
        cfg.max_json_response_size = self.transport_bound();
        cfg.max_sse_event_size = self.transport_bound();
        let transport = StreamableHttpClientTransport::with_client(client.clone(), cfg);
        let service = match ().serve(transport).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(why) = lock(&auth_failure).take() {
                    return Err(Error::Auth {
                        server: server.name.to_owned(),
                        why,
                    });
                }
                let why = chain(&e);
                if is_auth(&why) {
                    return Err(Error::Auth {
                        server: server.name.to_owned(),
                        why,
                    });
                }
                // A server of the older protocol answers the POST with an error: it may speak
                // HTTP+SSE instead.
                let sse = crate::sse::LegacySse::open(client, server.url, self.transport_bound())
                    .await
                    .map_err(|sse| connect_err(format!("{why} (nor over SSE: {sse})")))?;
                ().serve(sse).await.map_err(|e| {
                    let why = chain(&e);
                    if is_auth(&why) {
                        Error::Auth {
                            server: server.name.to_owned(),
                            why,
                        }
                    } else {
                        connect_err(why)
                    }
                })?
            }
        };
        let tools = self.list_tools(server, &service).await?;
        Ok(Conn {
            service,
            tools,
            too_large,
        })
    }

    /// Every tool of `server`, page by page, within `MAX_TOOLS` and `MAX_TOOL_BYTES`: a server
    /// that pages forever, or lists tools without end, is refused before it fills memory (or
    /// the model's context).
    async fn list_tools(
        &self,
        server: Server<'_>,
        service: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    ) -> Result<Vec<ToolInfo>, Error> {
        let mut out: Vec<ToolInfo> = Vec::new();
        let (mut cursor, mut bytes) = (None, 0usize);
        loop {
            let page = service
                .list_tools(Some(
                    rmcp::model::PaginatedRequestParams::default().with_cursor(cursor),
                ))
                .await
                .map_err(|e| classify(server, &e, self.limits.max_result_bytes))?;
            for t in page.tools {
                let info = ToolInfo {
                    name: t.name.to_string(),
                    description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                    input_schema: Value::Object((*t.input_schema).clone()),
                };
                bytes +=
                    info.name.len() + info.description.len() + info.input_schema.to_string().len();
                out.push(info);
            }
            if out.len() > MAX_TOOLS || bytes > MAX_TOOL_BYTES {
                return Err(Error::Protocol {
                    server: server.name.to_owned(),
                    why: format!(
                        "it lists more than {MAX_TOOLS} tools or {} MiB of tool definitions; agentd offers a model no more",
                        MAX_TOOL_BYTES >> 20
                    ),
                });
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// The most bytes one response may take on the wire: four times the result cap (JSON
    /// escaping, structured content beside the text), at least 16 MiB.
    fn transport_bound(&self) -> usize {
        self.limits.max_result_bytes.saturating_mul(4).max(16 << 20)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn key(session_id: &str, server: Server<'_>) -> Key {
    (
        session_id.to_owned(),
        server.name.to_owned(),
        server.url.to_owned(),
    )
}

/// The server's host and the addresses it may be reached at, if the policy lets agentd reach
/// it at all.
async fn check(server: Server<'_>, policy: &Policy) -> Result<(String, Vec<SocketAddr>), Error> {
    let blocked = |why: String| Error::Blocked {
        server: server.name.to_owned(),
        url: server.url.to_owned(),
        why,
    };
    let url = reqwest13::Url::parse(server.url).map_err(|e| blocked(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(blocked(format!(
            "the scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(blocked("the URL has no host".into())),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    policy
        .check_name(&host)
        .map_err(|e| blocked(e.to_string()))?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Error::Connect {
                server: server.name.to_owned(),
                url: server.url.to_owned(),
                why: format!("cannot resolve {host}: {e}"),
            })?
            .collect(),
    };
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    policy
        .check(&host, &ips)
        .map_err(|e| blocked(e.to_string()))?;
    Ok((host, addrs))
}

/// The error and its sources, as one line, without rmcp's transport type names, and short
/// enough for a tool result.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = full_chain(e);
    if let Some(i) = s.find("] error: ")
        && s.contains("Transport [")
    {
        s = s[i + "] error: ".len()..].to_owned();
    }
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn is_auth(why: &str) -> bool {
    [
        "Auth required",
        "Insufficient scope",
        "HTTP 401",
        "HTTP 403",
    ]
    .iter()
    .any(|m| why.contains(m))
}

fn classify(server: Server<'_>, e: &ServiceError, cap: usize) -> Error {
    let name = server.name.to_owned();
    if let ServiceError::McpError(data) = e {
        return Error::Server {
            server: name,
            why: data.message.to_string(),
        };
    }
    let why = chain(e);
    if why.contains("exceeded the maximum size") {
        Error::TooLarge {
            server: name,
            bytes: cap.saturating_mul(4).max(16 << 20),
            cap,
        }
    } else if is_auth(&why) {
        Error::Auth { server: name, why }
    } else if why.contains("eserializ")
        || why.contains("nexpected")
        || why.contains("Content type")
        || why.contains("content type")
    {
        Error::Protocol { server: name, why }
    } else {
        Error::Connect {
            server: name,
            url: server.url.to_owned(),
            why,
        }
    }
}
