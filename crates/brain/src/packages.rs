//! The packages an environment names, installed into the session's workspace when its sandbox
//! is provisioned — once per workspace and list: a marker file remembers what was installed.
//! Package names were validated when the environment was stored, so quoting them is safe.
//!
//! apt packages are the exception: the sandbox has no root, and it sees the host's `/usr`
//! read-only, so system packages come from the host. They are checked there before the sandbox
//! is made, and a missing one is reported with the command that installs it.

use agentd_wire::environment::{EnvironmentConfig, Packages};

/// A bash script that installs `env`'s packages, or None when it names none.
pub fn setup_script(env: &EnvironmentConfig) -> Option<String> {
    let EnvironmentConfig::Cloud { packages, .. } = env else {
        return None;
    };
    let Packages {
        apt,
        cargo,
        gem,
        go,
        npm,
        pip,
        ..
    } = packages;
    if [cargo, gem, go, npm, pip].iter().all(|l| l.is_empty()) {
        return None;
    }
    let q = |l: &[String]| {
        l.iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let want = serde_json::to_string(packages)
        .unwrap_or_default()
        .replace('\'', "");
    let mut s = String::from("set -e\nmkdir -p /workspace/.agentd\n");
    s.push_str(&format!("want='{want}'\n"));
    s.push_str("if [ \"$(cat /workspace/.agentd/packages 2>/dev/null)\" != \"$want\" ]; then\n");
    let _ = apt;
    if !pip.is_empty() {
        s.push_str(&format!(
            "  [ -x /workspace/.venv/bin/pip ] || python3 -m venv /workspace/.venv\n  /workspace/.venv/bin/pip install --disable-pip-version-check -q {}\n",
            q(pip)
        ));
    }
    if !npm.is_empty() {
        s.push_str(&format!(
            "  npm install -g --silent --prefix /workspace/.npm-global {}\n",
            q(npm)
        ));
    }
    if !cargo.is_empty() {
        s.push_str(&format!(
            "  cargo install --quiet --root /workspace/.cargo {}\n",
            q(cargo)
        ));
    }
    if !gem.is_empty() {
        s.push_str(&format!("  gem install --no-document --install-dir /workspace/.gem --bindir /workspace/.gem/bin {}\n", q(gem)));
    }
    for g in go {
        s.push_str(&format!("  GOPATH=/workspace/go go install '{g}'\n"));
    }
    s.push_str("  printf '%s' \"$want\" > /workspace/.agentd/packages\nfi\n");
    Some(s)
}

/// The environment's apt packages that are not installed on the host, or why that cannot be
/// told.
pub async fn missing_apt(env: &EnvironmentConfig) -> Result<Vec<String>, String> {
    let EnvironmentConfig::Cloud { packages, .. } = env else {
        return Ok(vec![]);
    };
    let mut missing = Vec::new();
    for p in &packages.apt {
        // `name=version` pins are checked by name; the host decides the version.
        let name = p.split(['=', ':']).next().unwrap_or(p);
        let out = tokio::process::Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", name])
            .output()
            .await
            .map_err(|e| format!("cannot check apt packages on this host (dpkg-query: {e})"))?;
        if !String::from_utf8_lossy(&out.stdout).contains("install ok installed") {
            missing.push(name.to_owned());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_per_manager_and_none_without_packages() {
        let none: EnvironmentConfig = serde_json::from_str(r#"{"type":"cloud"}"#).unwrap();
        assert!(setup_script(&none).is_none());
        let env: EnvironmentConfig = serde_json::from_str(
            r#"{"type":"cloud","packages":{"pip":["requests==2.32.3"],"npm":["left-pad"]}}"#,
        )
        .unwrap();
        let s = setup_script(&env).unwrap();
        assert!(
            s.contains("pip install --disable-pip-version-check -q 'requests==2.32.3'"),
            "{s}"
        );
        assert!(
            s.contains("--prefix /workspace/.npm-global 'left-pad'"),
            "{s}"
        );
        assert!(s.contains("/workspace/.agentd/packages"));
        let apt: EnvironmentConfig =
            serde_json::from_str(r#"{"type":"cloud","packages":{"apt":["jq"]}}"#).unwrap();
        assert!(
            setup_script(&apt).is_none(),
            "apt packages come from the host"
        );
    }
}
