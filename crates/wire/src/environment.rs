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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: Option<EnvironmentConfig>,
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
    pub config: Option<Option<EnvironmentConfig>>,
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
    fn cloud_config_fills_defaults() {
        let c: EnvironmentConfig = serde_json::from_str(r#"{"type":"cloud"}"#).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["networking"]["type"], "unrestricted");
        assert_eq!(v["packages"]["pip"], serde_json::json!([]));
    }
}
