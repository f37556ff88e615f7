//! Whether an environment lets agentd reach an MCP server. The MCP client runs in agentd, not
//! in the sandbox, but the environment's networking still decides: `unrestricted` reaches any
//! public host; `limited` reaches the servers' hosts only with `allow_mcp_servers` (or when
//! `allowed_hosts` names them). Private and loopback addresses need the operator's
//! `--egress-allow-private`, as for sandboxes.

use agentd_egress::{Cidr, Policy};
use agentd_wire::environment::{EnvironmentConfig, Networking};

/// The egress policy for reaching the MCP server at `url` from a session in `env`.
pub fn policy_for(env: &EnvironmentConfig, url: &str, operator: &[Cidr]) -> Policy {
    let p = match env {
        EnvironmentConfig::Cloud {
            networking:
                Networking::Limited {
                    allowed_hosts,
                    allow_mcp_servers,
                    ..
                },
            ..
        } => {
            let mut hosts = allowed_hosts.clone();
            if *allow_mcp_servers && let Some(h) = host_of(url) {
                hosts.push(h);
            }
            Policy::limited(&hosts, false)
        }
        // A self_hosted environment's networking is its worker's; agentd's own calls to
        // MCP servers reach public hosts, as an unrestricted environment's would.
        EnvironmentConfig::Cloud {
            networking: Networking::Unrestricted,
            ..
        }
        | EnvironmentConfig::SelfHosted {} => Policy::unrestricted(),
    };
    p.with_operator_ranges(operator)
}

/// Why `env` can never reach the MCP server at `url`, if its policy refuses the host by name
/// (known without resolving it): the check made when a session is created.
pub fn refusal(env: &EnvironmentConfig, url: &str, operator: &[Cidr]) -> Option<String> {
    let host = host_of(url)?;
    policy_for(env, url, operator)
        .check_name(&host)
        .err()
        .map(|_| {
            format!(
                "the environment's networking is limited and does not let agentd reach {host}: set allow_mcp_servers to true, or add {host} to allowed_hosts"
            )
        })
}

fn host_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    match u.host()? {
        url::Host::Domain(d) => Some(d.to_owned()),
        url::Host::Ipv4(a) => Some(a.to_string()),
        url::Host::Ipv6(a) => Some(a.to_string()),
    }
}
