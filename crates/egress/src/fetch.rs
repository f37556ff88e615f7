//! `web_fetch`, run by agentd outside the sandbox under the environment's policy. Every hop of
//! a redirect is checked, and the connection goes to the address that was checked.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::Policy;

const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("fetch failed: {0}")]
    Failed(String),
}

/// GET `url` and return its body as text (HTML reduced to its visible text), at most
/// `max_bytes`, with a note when cut.
pub async fn fetch(url: &str, policy: &Policy, max_bytes: usize) -> Result<String, FetchError> {
    let mut url = reqwest::Url::parse(url)
        .map_err(|e| FetchError::Invalid(format!("invalid URL {url:?}: {e}")))?;
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Invalid(format!(
                "only http and https URLs can be fetched, not {}",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| FetchError::Invalid("the URL has no host".into()))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        policy
            .check_name(&host)
            .map_err(|d| FetchError::Denied(d.0))?;
        let addrs: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| FetchError::Failed(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        policy
            .check(&host, &ips)
            .map_err(|d| FetchError::Denied(d.0))?;
        // No proxy from agentd's own environment: one would resolve the name again and undo
        // the pinning to the address just checked.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addrs)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent("agentd-web-fetch/0.1")
            .build()
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| {
                    FetchError::Failed(format!("HTTP {} without a Location", resp.status()))
                })?;
            url = url
                .join(next)
                .map_err(|e| FetchError::Failed(format!("bad redirect {next:?}: {e}")))?;
            continue;
        }
        let status = resp.status();
        let html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.contains("html"));
        let mut body = Vec::new();
        let mut resp = resp;
        let mut cut = false;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > 4 * max_bytes {
                cut = true;
                break;
            }
        }
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if html {
            text = visible_text(&text);
        }
        if text.len() > max_bytes {
            let mut at = max_bytes;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
            cut = true;
        }
        if cut {
            text.push_str(&format!("\n[cut at {max_bytes} bytes]"));
        }
        if !status.is_success() {
            return Ok(format!("HTTP {status}\n{text}"));
        }
        return Ok(text);
    }
    Err(FetchError::Failed(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// The text a reader would see: tags, scripts and styles dropped, whitespace collapsed.
fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        if html.as_bytes()[i] == b'<' {
            let skip_to = ["script", "style"].iter().find_map(|t| {
                lower[i + 1..].starts_with(t).then(|| {
                    lower[i..]
                        .find(&format!("</{t}"))
                        .map_or(html.len(), |e| i + e)
                })
            });
            let from = skip_to.unwrap_or(i);
            i = match html[from..].find('>') {
                Some(e) => from + e + 1,
                None => html.len(),
            };
            out.push(' ');
        } else {
            let next = html[i..].find('<').map_or(html.len(), |e| i + e);
            out.push_str(&html[i..next]);
            i = next;
        }
    }
    let out = out
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"");
    let mut collapsed = String::with_capacity(out.len());
    for line in out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
    {
        collapsed.push_str(&line);
        collapsed.push('\n');
    }
    collapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_its_visible_text() {
        let t = visible_text(
            "<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>Title</h1>\n<p>One &amp; two</p></body></html>",
        );
        assert!(t.contains("Title") && t.contains("One & two"), "{t}");
        assert!(!t.contains("var x") && !t.contains("p{}"), "{t}");
    }
}
