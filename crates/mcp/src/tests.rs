use agentd_wire::ContentBlock;
use agentd_wire::environment::{EnvironmentConfig, Networking};
use serde_json::json;

use super::{Error, model_tool_name, policy_for, refusal};

#[test]
fn model_names_are_valid_tool_names() {
    assert_eq!(model_tool_name("crm", "lookup"), "mcp__crm__lookup");
    assert_eq!(model_tool_name("my server", "a.b"), "mcp__my_server__a_b");
    assert_eq!(model_tool_name("s", &"x".repeat(300)).len(), 128);
}

fn limited(allowed_hosts: &[&str], allow_mcp_servers: bool) -> EnvironmentConfig {
    serde_json::from_value(json!({
        "type": "cloud",
        "networking": {"type": "limited", "allowed_hosts": allowed_hosts,
                       "allow_mcp_servers": allow_mcp_servers},
    }))
    .expect("an environment config")
}

#[test]
fn limited_networking_reaches_an_mcp_host_only_when_it_is_allowed() {
    let url = "https://mcp.example.com/mcp";
    let why = refusal(&limited(&[], false), url, &[]).expect("refused");
    assert!(
        why.contains("mcp.example.com") && why.contains("allow_mcp_servers"),
        "{why}"
    );
    assert_eq!(refusal(&limited(&[], true), url, &[]), None);
    assert_eq!(
        refusal(&limited(&["mcp.example.com"], false), url, &[]),
        None
    );
    assert_eq!(refusal(&limited(&["*.example.com"], false), url, &[]), None);
    // allow_mcp_servers opens the agent's server, not every host
    let p = policy_for(&limited(&[], true), url, &[]);
    assert!(p.check_name("mcp.example.com").is_ok());
    assert!(p.check_name("other.example.com").is_err());
    let open = EnvironmentConfig::Cloud {
        networking: Networking::Unrestricted,
        packages: Default::default(),
    };
    assert_eq!(refusal(&open, url, &[]), None);
}

#[test]
fn loopback_is_refused_by_address_unless_the_operator_opens_it() {
    let open = serde_json::from_value::<EnvironmentConfig>(
        json!({"type": "cloud", "networking": {"type": "unrestricted"}}),
    )
    .expect("config");
    let url = "http://127.0.0.1:9/mcp";
    let lo: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    assert!(
        policy_for(&open, url, &[])
            .check("127.0.0.1", &[lo])
            .is_err()
    );
    let ranges = ["127.0.0.1/32".parse().expect("cidr")];
    assert!(
        policy_for(&open, url, &ranges)
            .check("127.0.0.1", &[lo])
            .is_ok()
    );
}

#[test]
fn results_keep_text_and_images_and_are_capped() {
    let content = vec![
        json!({"type": "text", "text": "hello"}),
        json!({"type": "image", "data": "aGk=", "mimeType": "image/png"}),
        json!({"type": "resource", "resource": {"uri": "file:///a", "text": "t"}}),
    ];
    let r = crate::content::convert("s", &content, None, false, 10_000).expect("fits");
    assert_eq!(r.content[0], ContentBlock::text("hello"));
    assert_eq!(
        r.content[1],
        ContentBlock::Image {
            source: json!({"type": "base64", "media_type": "image/png", "data": "aGk="})
        }
    );
    assert!(ContentBlock::join_text(&r.content[2..]).contains("file:///a"));
    let big = vec![json!({"type": "text", "text": "x".repeat(101)})];
    let e = crate::content::convert("s", &big, None, false, 100).expect_err("over the cap");
    assert!(matches!(e, Error::TooLarge { cap: 100, .. }), "{e}");
    // structured content stands in when there is no content
    let r = crate::content::convert("s", &[], Some(&json!({"n": 1})), true, 100).expect("fits");
    assert_eq!(r.content, vec![ContentBlock::text("{\"n\":1}")]);
    assert!(r.is_error);
}

#[test]
fn a_secret_never_prints() {
    let s = super::Secret::new("hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert_eq!(s.expose(), "hunter2");
}
