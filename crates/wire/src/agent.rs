//! Agents: a named, versioned configuration of model, system prompt and tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Timestamp;

/// What an agent version is; two versions are the same when their specs are equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub description: Option<String>,
    pub system: Option<String>,
    pub model: ModelConfig,
    pub tools: Vec<Tool>,
    pub mcp_servers: Vec<McpServer>,
    pub skills: Vec<Value>,
    /// Absent from a session's copy of the agent.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub multiagent: Option<Multiagent>,
    pub execution_identity: Value,
}

/// A coordinator topology: the agent may start threads running the agents of its roster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Multiagent {
    Coordinator { agents: Vec<RosterMember> },
}

impl Multiagent {
    pub fn members(&self) -> &[RosterMember] {
        match self {
            Multiagent::Coordinator { agents } => agents,
        }
    }
}

/// One roster entry. An agent pins each member to a version; a session, started from that
/// agent, holds each member's whole definition so the roster cannot change under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RosterMember {
    // Tried first: a reference lacks the definition's required fields, so it never parses
    // as one.
    Pinned(#[serde(serialize_with = "without_roster")] Box<SessionAgent>),
    Ref(AgentRef),
    /// The agent that owns the roster, at whichever version is in use: kept symbolic so a
    /// version's roster need not name the version being written. Shown resolved.
    Myself(SelfRef),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfRef {
    #[serde(rename = "type")]
    pub kind: SelfTag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelfTag {
    #[serde(rename = "self")]
    Myself,
}

impl Agent {
    /// The agent as the API shows it: a `self` roster entry names this agent and version.
    pub fn shown(mut self) -> Agent {
        if let Some(Multiagent::Coordinator { agents }) = &mut self.spec.multiagent {
            for m in agents {
                if matches!(m, RosterMember::Myself(_)) {
                    *m = RosterMember::Ref(AgentRef {
                        kind: AgentTag::Agent,
                        id: self.id.clone(),
                        version: self.version,
                    });
                }
            }
        }
        self
    }
}

/// An agent at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRef {
    #[serde(rename = "type")]
    pub kind: AgentTag,
    pub id: String,
    pub version: u32,
}

/// `multiagent` as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MultiagentParams {
    Coordinator {
        agents: Vec<RosterParam>,
    },
    #[serde(rename = "multiagent_20261001")]
    Multiagent20261001 {
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    },
}

/// A roster entry as a client sends it: an agent id, a reference, `self`, or an advisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RosterParam {
    Id(String),
    Entry(RosterEntryParam),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RosterEntryParam {
    Agent {
        id: String,
        #[serde(default)]
        version: Option<u32>,
    },
    #[serde(rename = "self")]
    Myself {},
    Advisor {
        model: String,
    },
}

/// The agent resource as returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AgentTag,
    pub version: u32,
    #[serde(flatten)]
    pub spec: AgentSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentTag {
    Agent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_geo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Speed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    Standard,
    Fast,
}

/// `model` in a request: a bare model id or a full config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelParam {
    Id(String),
    Config(ModelConfig),
}

impl From<ModelParam> for ModelConfig {
    fn from(p: ModelParam) -> Self {
        match p {
            ModelParam::Id(id) => ModelConfig {
                id,
                effort: None,
                inference_geo: None,
                speed: None,
            },
            ModelParam::Config(c) => c,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: McpServerKind,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpServerKind {
    Url,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    Custom(CustomTool),
    #[serde(rename = "agent_toolset_20260401")]
    AgentToolset20260401(Toolset),
    McpToolset(McpToolset),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTool {
    pub name: String,
    pub description: String,
    pub input_schema: InputSchema,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSchema {
    #[serde(rename = "type")]
    pub kind: ObjectTag,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectTag {
    Object,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toolset {
    #[serde(default)]
    pub configs: Vec<ToolConfig>,
    #[serde(default)]
    pub default_config: DefaultToolConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub permission_policy: PermissionPolicy,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefaultToolConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub permission_policy: PermissionPolicy,
}

impl Default for DefaultToolConfig {
    fn default() -> Self {
        DefaultToolConfig {
            enabled: true,
            permission_policy: PermissionPolicy::AlwaysAllow,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PermissionPolicy {
    #[default]
    AlwaysAllow,
    AlwaysAsk,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolset {
    pub mcp_server_name: String,
    #[serde(default)]
    pub configs: Vec<ToolConfig>,
    #[serde(default)]
    pub default_config: DefaultToolConfig,
}

/// `POST /v1/agents`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    pub name: String,
    pub model: ModelParam,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
    #[serde(default)]
    pub skills: Vec<Value>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub multiagent: Option<MultiagentParams>,
    #[serde(default)]
    pub execution_identity: Option<Value>,
}

impl CreateAgent {
    /// The spec without its roster, and the roster as sent: resolving it needs the catalog.
    pub fn into_parts(self) -> (AgentSpec, Option<MultiagentParams>) {
        let spec = AgentSpec {
            name: self.name,
            description: self.description,
            system: self.system,
            model: self.model.into(),
            tools: self.tools,
            mcp_servers: self.mcp_servers,
            skills: self.skills,
            metadata: self.metadata,
            multiagent: None,
            execution_identity: self
                .execution_identity
                .unwrap_or_else(default_execution_identity),
        };
        (spec, self.multiagent)
    }

    /// The spec alone, for agents without a roster.
    pub fn into_spec(self) -> AgentSpec {
        self.into_parts().0
    }
}

/// The identity runs carry when the user names none.
pub fn default_execution_identity() -> Value {
    serde_json::json!({"type": "service_account"})
}

/// `POST /v1/agents/{id}`: every field optional; `version` guards against lost updates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    pub version: Option<u32>,
    pub name: Option<String>,
    pub model: Option<ModelParam>,
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub system: Option<Option<String>>,
    pub tools: Option<Option<Vec<Tool>>>,
    pub mcp_servers: Option<Option<Vec<McpServer>>>,
    pub skills: Option<Option<Vec<Value>>>,
    /// A `null` value deletes that key.
    pub metadata: Option<Option<BTreeMap<String, Option<String>>>>,
    /// Applied by the caller once resolved; `apply` leaves the roster alone.
    #[serde(default, deserialize_with = "double_option")]
    pub multiagent: Option<Option<MultiagentParams>>,
    #[serde(default, deserialize_with = "double_option")]
    pub execution_identity: Option<Option<Value>>,
}

impl UpdateAgent {
    /// The spec that results from applying this update to `base`.
    pub fn apply(self, base: &AgentSpec) -> AgentSpec {
        let mut s = base.clone();
        if let Some(n) = self.name {
            s.name = n;
        }
        if let Some(m) = self.model {
            s.model = m.into();
        }
        if let Some(d) = self.description {
            s.description = d;
        }
        if let Some(d) = self.system {
            s.system = d;
        }
        if let Some(t) = self.tools {
            s.tools = t.unwrap_or_default();
        }
        if let Some(t) = self.mcp_servers {
            s.mcp_servers = t.unwrap_or_default();
        }
        if let Some(t) = self.skills {
            s.skills = t.unwrap_or_default();
        }
        if let Some(Some(m)) = self.metadata {
            merge_metadata(&mut s.metadata, m);
        }
        if let Some(e) = self.execution_identity {
            s.execution_identity = e.unwrap_or_else(default_execution_identity);
        }
        s
    }
}

/// Apply a metadata patch: a `null` value deletes the key, others set it.
pub fn merge_metadata(
    into: &mut BTreeMap<String, String>,
    patch: BTreeMap<String, Option<String>>,
) {
    for (k, v) in patch {
        match v {
            Some(v) => {
                into.insert(k, v);
            }
            None => {
                into.remove(&k);
            }
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// The agent version a session is pinned to, as the session shows it: the agent's
/// configuration without its metadata, which the wire type does not carry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionAgent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AgentTag,
    pub version: u32,
    #[serde(flatten)]
    pub spec: AgentSpec,
}

/// A thread's or a roster member's view of an agent: the SDK's `SessionThreadAgent`, which has
/// no roster.
pub(crate) fn without_roster<S: serde::Serializer>(
    a: &SessionAgent,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut v = serde_json::to_value(a).map_err(serde::ser::Error::custom)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("multiagent");
    }
    v.serialize(s)
}

impl Serialize for SessionAgent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: AgentTag,
            version: u32,
            name: &'a str,
            description: &'a Option<String>,
            system: &'a Option<String>,
            model: &'a ModelConfig,
            tools: &'a [Tool],
            mcp_servers: &'a [McpServer],
            skills: &'a [Value],
            multiagent: &'a Option<Multiagent>,
            execution_identity: &'a Value,
        }
        let a = &self.spec;
        Shown {
            id: &self.id,
            kind: self.kind,
            version: self.version,
            name: &a.name,
            description: &a.description,
            system: &a.system,
            model: &a.model,
            tools: &a.tools,
            mcp_servers: &a.mcp_servers,
            skills: &a.skills,
            multiagent: &a.multiagent,
            execution_identity: &a.execution_identity,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_accepts_a_bare_id_or_a_config() {
        let a: CreateAgent =
            serde_json::from_str(r#"{"name":"a","model":"claude-sonnet-4-6"}"#).unwrap();
        assert_eq!(a.into_spec().model.id, "claude-sonnet-4-6");
        let b: CreateAgent =
            serde_json::from_str(r#"{"name":"a","model":{"id":"x","speed":"fast"}}"#).unwrap();
        assert_eq!(b.into_spec().model.speed, Some(Speed::Fast));
    }

    #[test]
    fn update_distinguishes_null_from_absent() {
        let base = serde_json::from_str::<CreateAgent>(
            r#"{"name":"a","model":"m","system":"s","metadata":{"k":"v","j":"w"}}"#,
        )
        .unwrap()
        .into_spec();
        let u: UpdateAgent =
            serde_json::from_str(r#"{"system":null,"metadata":{"k":null}}"#).unwrap();
        let s = u.apply(&base);
        assert_eq!(s.system, None);
        assert_eq!(s.metadata.len(), 1);
        assert_eq!(s.name, "a");
        let same = UpdateAgent::default().apply(&base);
        assert_eq!(same, base);
    }

    #[test]
    fn toolset_defaults_are_filled() {
        let t: Tool = serde_json::from_str(r#"{"type":"agent_toolset_20260401"}"#).unwrap();
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["default_config"]["enabled"], true);
        assert_eq!(
            v["default_config"]["permission_policy"]["type"],
            "always_allow"
        );
    }
}
