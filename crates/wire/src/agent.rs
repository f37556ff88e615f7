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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RosterParam {
    Id(String),
    Entry(RosterEntryParam),
}

impl<'de> Deserialize<'de> for RosterParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdOr::<RosterEntryParam>::new(
            "an agent id or a roster entry object with a `type`",
        ))
        .map(|v| match v {
            Either::Id(id) => RosterParam::Id(id),
            Either::Object(e) => RosterParam::Entry(e),
        })
    }
}

/// A string or an object, told apart by the JSON's own type rather than by trying each form
/// (serde's `untagged`), so that an error inside the object names its field instead of
/// "data did not match any variant".
enum Either<T> {
    Id(String),
    Object(T),
}

struct IdOr<T> {
    expecting: &'static str,
    object: std::marker::PhantomData<T>,
}

impl<T> IdOr<T> {
    fn new(expecting: &'static str) -> Self {
        IdOr {
            expecting,
            object: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for IdOr<T> {
    type Value = Either<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Either::Id(v.to_owned()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Either::Object)
    }
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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelParam {
    Id(String),
    Config(ModelConfig),
}

impl<'de> Deserialize<'de> for ModelParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdOr::<ModelConfig>::new(
            "a model id or a model config object ({\"id\": ...})",
        ))
        .map(|v| match v {
            Either::Id(id) => ModelParam::Id(id),
            Either::Object(c) => ModelParam::Config(c),
        })
    }
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
#[serde(from = "StoredToolset")]
pub struct Toolset {
    #[serde(default)]
    pub configs: Vec<ToolConfig>,
    #[serde(default)]
    pub default_config: DefaultToolConfig,
}

/// A toolset as stored. Agents written before configs carried their `type` are read with it
/// filled in, so the SDK, whose config union is keyed by `type`, parses every one of them.
#[derive(Deserialize)]
struct StoredToolset {
    #[serde(default)]
    configs: Vec<ToolConfig>,
    #[serde(default)]
    default_config: DefaultToolConfig,
}

impl From<StoredToolset> for Toolset {
    fn from(t: StoredToolset) -> Self {
        let mut configs = t.configs;
        for c in &mut configs {
            c.rest
                .entry("type")
                .or_insert_with(|| Value::String(c.name.clone()));
        }
        Toolset {
            configs,
            default_config: t.default_config,
        }
    }
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

/// The tools of `agent_toolset_20260401`, as the SDK names them in a toolset's `configs`.
pub const AGENT_TOOLSET_20260401_TOOLS: &[&str] = &[
    "bash",
    "edit",
    "read",
    "write",
    "glob",
    "grep",
    "web_fetch",
    "web_search",
];

/// A tool as a client sends it (the SDK's `…Params`): optional fields may be absent or
/// `null`. Stored and shown as a `Tool`, with every default resolved.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolParam {
    Custom(CustomTool),
    #[serde(rename = "agent_toolset_20260401")]
    AgentToolset20260401(ToolsetParams),
    McpToolset(McpToolsetParams),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsetParams {
    #[serde(default)]
    pub configs: Vec<ToolConfigParams>,
    #[serde(default)]
    pub default_config: Option<DefaultToolConfigParams>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolsetParams {
    pub mcp_server_name: String,
    #[serde(default)]
    pub configs: Vec<ToolConfigParams>,
    #[serde(default)]
    pub default_config: Option<DefaultToolConfigParams>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolConfigParams {
    pub name: String,
    /// Absent or `null`: the toolset's default.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultToolConfigParams {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

impl DefaultToolConfigParams {
    fn resolve(self) -> DefaultToolConfig {
        let d = DefaultToolConfig::default();
        DefaultToolConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            permission_policy: self.permission_policy.unwrap_or(d.permission_policy),
        }
    }
}

/// A per-tool override keeps what it sets and takes the rest from the toolset's default, so
/// what is stored (and shown) is what each tool gets. A built-in tool's config is shown with
/// its `type`, which the SDK's response type requires.
fn resolve_configs(
    configs: Vec<ToolConfigParams>,
    d: &DefaultToolConfig,
    typed: bool,
) -> Vec<ToolConfig> {
    configs
        .into_iter()
        .map(|mut c| {
            // The SDK dumps the optional fields it knows as null: null is absent.
            c.rest.retain(|_, v| !v.is_null());
            if typed {
                c.rest
                    .entry("type")
                    .or_insert_with(|| Value::String(c.name.clone()));
            }
            ToolConfig {
                name: c.name,
                enabled: c.enabled.unwrap_or(d.enabled),
                permission_policy: c.permission_policy.unwrap_or(d.permission_policy),
                rest: c.rest,
            }
        })
        .collect()
}

impl From<ToolParam> for Tool {
    fn from(p: ToolParam) -> Tool {
        match p {
            ToolParam::Custom(c) => Tool::Custom(c),
            ToolParam::AgentToolset20260401(t) => {
                let default_config = t.default_config.unwrap_or_default().resolve();
                Tool::AgentToolset20260401(Toolset {
                    configs: resolve_configs(t.configs, &default_config, true),
                    default_config,
                })
            }
            ToolParam::McpToolset(t) => {
                let default_config = t.default_config.unwrap_or_default().resolve();
                Tool::McpToolset(McpToolset {
                    mcp_server_name: t.mcp_server_name,
                    configs: resolve_configs(t.configs, &default_config, false),
                    default_config,
                })
            }
        }
    }
}

fn tools_of(params: Vec<ToolParam>) -> Vec<Tool> {
    params.into_iter().map(Tool::from).collect()
}

/// `execution_identity` as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutionIdentity {
    ServiceAccount {},
    AwsRole { role_arn: String },
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
    pub tools: Vec<ToolParam>,
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
    #[serde(default)]
    pub skills: Vec<Value>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub multiagent: Option<MultiagentParams>,
    #[serde(default)]
    pub execution_identity: Option<ExecutionIdentity>,
}

impl CreateAgent {
    /// The spec without its roster, and the roster as sent: resolving it needs the catalog.
    pub fn into_parts(self) -> (AgentSpec, Option<MultiagentParams>) {
        let spec = AgentSpec {
            name: self.name,
            description: self.description,
            system: self.system,
            model: self.model.into(),
            tools: tools_of(self.tools),
            mcp_servers: self.mcp_servers,
            skills: self.skills,
            metadata: self.metadata,
            multiagent: None,
            execution_identity: identity_of(self.execution_identity),
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

fn identity_of(e: Option<ExecutionIdentity>) -> Value {
    e.and_then(|e| serde_json::to_value(e).ok())
        .unwrap_or_else(default_execution_identity)
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
    /// `null` clears, as an empty list does.
    #[serde(default, deserialize_with = "double_option")]
    pub tools: Option<Option<Vec<ToolParam>>>,
    #[serde(default, deserialize_with = "double_option")]
    pub mcp_servers: Option<Option<Vec<McpServer>>>,
    #[serde(default, deserialize_with = "double_option")]
    pub skills: Option<Option<Vec<Value>>>,
    /// A `null` value deletes that key.
    pub metadata: Option<Option<BTreeMap<String, Option<String>>>>,
    /// Applied by the caller once resolved; `apply` leaves the roster alone.
    #[serde(default, deserialize_with = "double_option")]
    pub multiagent: Option<Option<MultiagentParams>>,
    #[serde(default, deserialize_with = "double_option")]
    pub execution_identity: Option<Option<ExecutionIdentity>>,
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
        // The SDK clears these with an empty string as with `null`.
        if let Some(d) = self.description {
            s.description = d.filter(|d| !d.is_empty());
        }
        if let Some(d) = self.system {
            s.system = d.filter(|d| !d.is_empty());
        }
        if let Some(t) = self.tools {
            s.tools = tools_of(t.unwrap_or_default());
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
            s.execution_identity = identity_of(e);
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
    fn null_in_an_optional_toolset_field_means_its_default() {
        let a: CreateAgent = serde_json::from_str(
            r#"{"name":"a","model":"m","execution_identity":null,"tools":[{"type":"agent_toolset_20260401",
                "default_config":null,"configs":[{"name":"bash","enabled":null,"permission_policy":null}]}]}"#,
        )
        .unwrap();
        let spec = a.into_spec();
        let Tool::AgentToolset20260401(t) = &spec.tools[0] else {
            panic!("{:?}", spec.tools)
        };
        assert_eq!(t.default_config, DefaultToolConfig::default());
        assert!(t.configs[0].enabled);
        assert_eq!(spec.execution_identity, default_execution_identity());
    }

    #[test]
    fn a_config_the_sdk_dumped_round_trips_and_a_stored_one_gets_its_type() {
        // `model_dump()` of a web_fetch config names its optional fields as null.
        let t: ToolParam = serde_json::from_str(
            r#"{"type":"agent_toolset_20260401","configs":[{"name":"web_fetch","type":"web_fetch",
                "enabled":true,"url_sources":null,"allowed_domains":null,"max_content_tokens":null}]}"#,
        )
        .unwrap();
        let Tool::AgentToolset20260401(t) = Tool::from(t) else {
            panic!()
        };
        assert_eq!(
            t.configs[0].rest,
            serde_json::Map::from_iter([("type".into(), Value::String("web_fetch".into()))])
        );
        // An agent stored before configs carried their type.
        let stored: Tool = serde_json::from_str(
            r#"{"type":"agent_toolset_20260401","configs":[{"name":"grep","enabled":true,"permission_policy":{"type":"always_allow"}}],
                "default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}"#,
        )
        .unwrap();
        let shown = serde_json::to_value(&stored).unwrap();
        assert_eq!(shown["configs"][0]["type"], "grep");
    }

    #[test]
    fn a_tool_config_takes_what_it_does_not_set_from_the_default() {
        let t: ToolParam = serde_json::from_str(
            r#"{"type":"agent_toolset_20260401","default_config":{"enabled":false,"permission_policy":{"type":"always_ask"}},
                "configs":[{"name":"bash","enabled":true},{"name":"read","permission_policy":{"type":"always_allow"}}]}"#,
        )
        .unwrap();
        let Tool::AgentToolset20260401(t) = Tool::from(t) else {
            panic!()
        };
        assert!(t.configs[0].enabled);
        assert_eq!(t.configs[0].permission_policy, PermissionPolicy::AlwaysAsk);
        assert!(!t.configs[1].enabled);
        assert_eq!(
            t.configs[1].permission_policy,
            PermissionPolicy::AlwaysAllow
        );
    }

    #[test]
    fn update_with_null_lists_clears_them() {
        let base = serde_json::from_str::<CreateAgent>(
            r#"{"name":"a","model":"m","tools":[{"type":"agent_toolset_20260401"}],"skills":[{"type":"anthropic","skill_id":"x"}]}"#,
        )
        .unwrap()
        .into_spec();
        let u: UpdateAgent =
            serde_json::from_str(r#"{"tools":null,"mcp_servers":null,"skills":null}"#).unwrap();
        let s = u.apply(&base);
        assert!(s.tools.is_empty() && s.skills.is_empty() && s.mcp_servers.is_empty());
        let kept = serde_json::from_str::<UpdateAgent>("{}")
            .unwrap()
            .apply(&base);
        assert_eq!(kept.tools.len(), 1);
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

#[cfg(test)]
mod param_tests {
    use super::*;

    #[test]
    fn a_model_or_roster_entry_error_names_what_is_wrong_inside_it() {
        let bad: Result<ModelParam, _> = serde_json::from_str(r#"{"id": 5}"#);
        let e = bad.unwrap_err().to_string();
        assert!(
            e.contains("invalid type: integer `5`, expected a string"),
            "{e}"
        );
        let bad: Result<ModelParam, _> = serde_json::from_str("7");
        let e = bad.unwrap_err().to_string();
        assert!(
            e.contains("expected a model id or a model config object"),
            "{e}"
        );
        let ok: ModelParam = serde_json::from_str(r#""claude-x""#).unwrap();
        assert_eq!(ok, ModelParam::Id("claude-x".into()));
        let bad: Result<RosterParam, _> = serde_json::from_str(r#"{"type": "agent"}"#);
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("missing field `id`"), "{e}");
        assert!(!e.contains("did not match any variant"), "{e}");
    }
}
