//! Where agentd itself may connect on a credential's behalf (MCP servers, token endpoints):
//! the egress rule sandboxes live by, so a URL a user names cannot make agentd reach this
//! host, its link or private space the operator did not open (`--egress-allow-private`).
//! Every address a name resolves to is checked at connect time, address literals before the
//! request, and redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use agentd_egress::{Cidr, refusal};

/// The ranges the operator opened beyond public space.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    ranges: Arc<Vec<Cidr>>,
}

impl Reach {
    pub fn new(ranges: Vec<Cidr>) -> Reach {
        Reach {
            ranges: Arc::new(ranges),
        }
    }

    /// Why `url` may not be reached as it stands: not http(s), or an address literal that is
    /// not public. Names are judged when they resolve.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let u = reqwest::Url::parse(url).map_err(|_| format!("{url:?} is not a URL"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{url:?} is not an http or https URL"));
        }
        let Some(host) = u.host_str() else {
            return Err(format!("{url:?} has no host"));
        };
        let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() else {
            return Ok(());
        };
        match refusal(ip, &self.ranges) {
            Some(why) => Err(format!("{url} names {why}")),
            None => Ok(()),
        }
    }

    /// Refuse `url` unless it and every address its host resolves to may be reached.
    pub async fn check(&self, url: &str) -> Result<(), String> {
        self.check_url(url)?;
        let u = reqwest::Url::parse(url).map_err(|_| format!("{url:?} is not a URL"))?;
        match u.host_str() {
            Some(h) if h.trim_matches(['[', ']']).parse::<IpAddr>().is_err() => {
                self.resolve(h).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Resolve `host` and refuse it if any address is out of reach.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        for a in &addrs {
            if let Some(why) = refusal(a.ip(), &self.ranges) {
                return Err(format!("{host} resolves to {why}"));
            }
        }
        Ok(addrs)
    }

    /// An HTTP client that connects only where `self` allows.
    pub fn client(&self) -> reqwest::Client {
        // No system proxy: the addresses checked must be the ones connected to.
        reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(self.clone()))
            .build()
            .expect("an HTTP client")
    }
}

impl reqwest::dns::Resolve for Reach {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let me = self.clone();
        Box::pin(async move {
            let addrs = Reach::resolve(&me, name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn this_host_and_private_space_are_out_of_reach_unless_opened() {
        let closed = Reach::default();
        assert!(closed.check_url("http://127.0.0.1:9/x").is_err());
        assert!(closed.check_url("http://[::1]/").is_err());
        assert!(closed.check_url("https://10.1.2.3/").is_err());
        assert!(closed.check_url("https://169.254.169.254/latest").is_err());
        assert!(closed.check_url("https://mcp.example.com/").is_ok());
        let err = closed.resolve("localhost").await.unwrap_err();
        assert!(err.contains("localhost resolves to"), "{err}");
        let open = Reach::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(open.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(open.check_url("https://10.1.2.3/").is_err());
    }
}
