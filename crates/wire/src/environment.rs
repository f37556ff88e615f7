//! Environments: where a session's tools run. For now a validated, stored configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EnvironmentTag,
    pub name: String,
    pub description: Option<String>,
    pub config: EnvironmentConfig,
    pub metadata: BTreeMap<String, String>,
    pub scope: Option<Scope>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentTag {
    Environment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Organization,
    Account,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnvironmentConfig {
    Cloud {
        #[serde(default)]
        networking: Networking,
        #[serde(default)]
        packages: Packages,
    },
    SelfHosted {},
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        EnvironmentConfig::Cloud {
            networking: Networking::default(),
            packages: Packages::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Networking {
    #[default]
    Unrestricted,
    Limited {
        #[serde(default)]
        allowed_hosts: Vec<String>,
        #[serde(default)]
        allow_mcp_servers: bool,
        #[serde(default)]
        allow_package_managers: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    #[serde(rename = "type", default = "packages_tag")]
    pub kind: Option<PackagesTag>,
    #[serde(default)]
    pub apt: Vec<String>,
    #[serde(default)]
    pub cargo: Vec<String>,
    #[serde(default)]
    pub gem: Vec<String>,
    #[serde(default)]
    pub go: Vec<String>,
    #[serde(default)]
    pub npm: Vec<String>,
    #[serde(default)]
    pub pip: Vec<String>,
}

impl Default for Packages {
    fn default() -> Self {
        Packages {
            kind: packages_tag(),
            apt: vec![],
            cargo: vec![],
            gem: vec![],
            go: vec![],
            npm: vec![],
            pip: vec![],
        }
    }
}

fn packages_tag() -> Option<PackagesTag> {
    Some(PackagesTag::Packages)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackagesTag {
    Packages,
}

impl EnvironmentConfig {
    /// Checks what serde cannot: host names and package names. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let EnvironmentConfig::Cloud {
            networking,
            packages,
        } = self
        else {
            return Ok(());
        };
        if let Networking::Limited { allowed_hosts, .. } = networking {
            for (i, h) in allowed_hosts.iter().enumerate() {
                if !valid_host(h) {
                    return Err(format!(
                        "config.networking.allowed_hosts[{i}]: {h:?} is not a host name (expected e.g. \"api.example.com\" or \"*.example.com\", no scheme, path or port)"
                    ));
                }
            }
        }
        for (manager, list) in [
            ("apt", &packages.apt),
            ("cargo", &packages.cargo),
            ("gem", &packages.gem),
            ("go", &packages.go),
            ("npm", &packages.npm),
            ("pip", &packages.pip),
        ] {
            for (i, p) in list.iter().enumerate() {
                let ok = !p.is_empty()
                    && p.len() <= 214
                    && !p.starts_with('-')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-+=<>~^@/:*!,[]".contains(c));
                if !ok {
                    return Err(format!(
                        "config.packages.{manager}[{i}]: {p:?} is not a package spec (letters, digits and ._-+=<>~^@/: only; must not start with '-')"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn valid_host(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `config` as a client sends it (the SDK's `…Params`): fields may be absent or `null`, which
/// on create means the default and on update keeps what the environment has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnvironmentConfigParams {
    Cloud {
        #[serde(default)]
        networking: Option<NetworkingParams>,
        #[serde(default)]
        packages: Option<PackagesParams>,
    },
    SelfHosted {},
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NetworkingParams {
    Unrestricted,
    Limited {
        #[serde(default)]
        allowed_hosts: Option<Vec<String>>,
        #[serde(default)]
        allow_mcp_servers: Option<bool>,
        #[serde(default)]
        allow_package_managers: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesParams {
    #[serde(rename = "type", default)]
    pub kind: Option<PackagesTag>,
    #[serde(default)]
    pub apt: Option<Vec<String>>,
    #[serde(default)]
    pub cargo: Option<Vec<String>>,
    #[serde(default)]
    pub gem: Option<Vec<String>>,
    #[serde(default)]
    pub go: Option<Vec<String>>,
    #[serde(default)]
    pub npm: Option<Vec<String>>,
    #[serde(default)]
    pub pip: Option<Vec<String>>,
}

impl EnvironmentConfigParams {
    /// The config that results from these params over `base` (an update) or over nothing (a
    /// create): what they leave unset is kept, or defaulted.
    pub fn apply(self, base: Option<&EnvironmentConfig>) -> EnvironmentConfig {
        let (base_net, base_pkg) = match base {
            Some(EnvironmentConfig::Cloud {
                networking,
                packages,
            }) => (Some(networking), Some(packages)),
            _ => (None, None),
        };
        match self {
            EnvironmentConfigParams::SelfHosted {} => EnvironmentConfig::SelfHosted {},
            EnvironmentConfigParams::Cloud {
                networking,
                packages,
            } => EnvironmentConfig::Cloud {
                networking: match networking {
                    None => base_net.cloned().unwrap_or_default(),
                    Some(n) => n.apply(base_net),
                },
                packages: match packages {
                    None => base_pkg.cloned().unwrap_or_default(),
                    Some(p) => p.apply(base_pkg),
                },
            },
        }
    }
}

impl NetworkingParams {
    fn apply(self, base: Option<&Networking>) -> Networking {
        let NetworkingParams::Limited {
            allowed_hosts,
            allow_mcp_servers,
            allow_package_managers,
        } = self
        else {
            return Networking::Unrestricted;
        };
        let (hosts, mcp, pm) = match base {
            Some(Networking::Limited {
                allowed_hosts,
                allow_mcp_servers,
                allow_package_managers,
            }) => (
                allowed_hosts.clone(),
                *allow_mcp_servers,
                *allow_package_managers,
            ),
            _ => (vec![], false, false),
        };
        Networking::Limited {
            allowed_hosts: allowed_hosts.unwrap_or(hosts),
            allow_mcp_servers: allow_mcp_servers.unwrap_or(mcp),
            allow_package_managers: allow_package_managers.unwrap_or(pm),
        }
    }
}

impl PackagesParams {
    fn apply(self, base: Option<&Packages>) -> Packages {
        let b = base.cloned().unwrap_or_default();
        Packages {
            kind: b.kind,
            apt: self.apt.unwrap_or(b.apt),
            cargo: self.cargo.unwrap_or(b.cargo),
            gem: self.gem.unwrap_or(b.gem),
            go: self.go.unwrap_or(b.go),
            npm: self.npm.unwrap_or(b.npm),
            pip: self.pip.unwrap_or(b.pip),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: Option<EnvironmentConfigParams>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub scope: Option<Scope>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[serde(default, deserialize_with = "crate::agent::double_option")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::agent::double_option")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::agent::double_option")]
    pub config: Option<Option<EnvironmentConfigParams>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, deserialize_with = "crate::agent::double_option")]
    pub scope: Option<Option<Scope>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_networking_rejects_urls_as_hosts() {
        let c: EnvironmentConfig = serde_json::from_str(
            r#"{"type":"cloud","networking":{"type":"limited","allowed_hosts":["https://x.com/"]}}"#,
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.contains("allowed_hosts[0]"), "{e}");
        let ok: EnvironmentConfig = serde_json::from_str(
            r#"{"type":"cloud","networking":{"type":"limited","allowed_hosts":["*.pypi.org","example.com"]},"packages":{"pip":["requests==2.32"]}}"#,
        )
        .unwrap();
        ok.validate().unwrap();
    }

    #[test]
    fn null_in_an_optional_config_field_means_its_default() {
        let p: EnvironmentConfigParams = serde_json::from_str(
            r#"{"type":"cloud","networking":null,"packages":{"pip":null,"apt":["git"],"type":null}}"#,
        )
        .unwrap();
        let c = p.apply(None);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["networking"]["type"], "unrestricted");
        assert_eq!(v["packages"]["apt"], serde_json::json!(["git"]));
        assert_eq!(v["packages"]["pip"], serde_json::json!([]));
        let p: EnvironmentConfigParams = serde_json::from_str(
            r#"{"type":"cloud","networking":{"type":"limited","allowed_hosts":null,"allow_mcp_servers":null,"allow_package_managers":null}}"#,
        )
        .unwrap();
        assert_eq!(
            p.apply(None),
            EnvironmentConfig::Cloud {
                networking: Networking::Limited {
                    allowed_hosts: vec![],
                    allow_mcp_servers: false,
                    allow_package_managers: false
                },
                packages: Packages::default(),
            }
        );
    }

    #[test]
    fn an_update_keeps_what_it_leaves_unset() {
        let base: EnvironmentConfig = serde_json::from_str(
            r#"{"type":"cloud","networking":{"type":"limited","allowed_hosts":["a.com"],"allow_package_managers":true},"packages":{"pip":["x"]}}"#,
        )
        .unwrap();
        let p: EnvironmentConfigParams = serde_json::from_str(
            r#"{"type":"cloud","networking":{"type":"limited","allow_mcp_servers":true},"packages":{"npm":["y"]}}"#,
        )
        .unwrap();
        let v = serde_json::to_value(p.apply(Some(&base))).unwrap();
        assert_eq!(
            v["networking"]["allowed_hosts"],
            serde_json::json!(["a.com"])
        );
        assert_eq!(v["networking"]["allow_package_managers"], true);
        assert_eq!(v["networking"]["allow_mcp_servers"], true);
        assert_eq!(v["packages"]["pip"], serde_json::json!(["x"]));
        assert_eq!(v["packages"]["npm"], serde_json::json!(["y"]));
        let p: EnvironmentConfigParams = serde_json::from_str(r#"{"type":"cloud"}"#).unwrap();
        assert_eq!(p.apply(Some(&base)), base);
    }

    #[test]
    fn cloud_config_fills_defaults() {
        let c: EnvironmentConfig = serde_json::from_str(r#"{"type":"cloud"}"#).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["networking"]["type"], "unrestricted");
        assert_eq!(v["packages"]["pip"], serde_json::json!([]));
    }
}
