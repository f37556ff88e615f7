//! Sessions: a running agent with its log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Timestamp, agent::AgentSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: SessionTag,
    pub agent: SessionAgent,
    pub environment_id: String,
    pub status: SessionStatus,
    pub title: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub usage: Usage,
    pub stats: Stats,
    pub resources: Vec<Value>,
    pub vault_ids: Vec<String>,
    pub outcome_evaluations: Vec<OutcomeEvaluation>,
    pub budget: Option<Value>,
    pub deployment_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionTag {
    Session,
}

/// The agent version a session is pinned to, as the session shows it: the agent's
/// configuration without its metadata, which the wire type does not carry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionAgent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: crate::agent::AgentTag,
    pub version: u32,
    #[serde(flatten)]
    pub spec: AgentSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Rescheduling,
    Running,
    Idle,
    Terminated,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Rescheduling => "rescheduling",
            SessionStatus::Running => "running",
            SessionStatus::Idle => "idle",
            SessionStatus::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rescheduling" => SessionStatus::Rescheduling,
            "running" => SessionStatus::Running,
            "idle" => SessionStatus::Idle,
            "terminated" => SessionStatus::Terminated,
            _ => return None,
        })
    }
}

/// Cumulative token usage of a session.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CacheCreation {
    pub ephemeral_5m_input_tokens: u64,
    pub ephemeral_1h_input_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, m: &crate::event::ModelUsage) {
        self.input_tokens += m.input_tokens;
        self.output_tokens += m.output_tokens;
        self.cache_read_input_tokens += m.cache_read_input_tokens;
        self.cache_creation.ephemeral_5m_input_tokens += m.cache_creation_input_tokens;
    }

    /// Add another usage's token counts (not its active time).
    pub fn add_usage(&mut self, o: &Usage) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_input_tokens += o.cache_read_input_tokens;
        self.cache_creation.ephemeral_5m_input_tokens += o.cache_creation.ephemeral_5m_input_tokens;
        self.cache_creation.ephemeral_1h_input_tokens += o.cache_creation.ephemeral_1h_input_tokens;
    }

    /// Take away another usage's token counts, stopping at zero.
    pub fn subtract(&mut self, o: &Usage) {
        self.input_tokens = self.input_tokens.saturating_sub(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_sub(o.output_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .saturating_sub(o.cache_read_input_tokens);
        let (c, oc) = (&mut self.cache_creation, &o.cache_creation);
        c.ephemeral_5m_input_tokens = c
            .ephemeral_5m_input_tokens
            .saturating_sub(oc.ephemeral_5m_input_tokens);
        c.ephemeral_1h_input_tokens = c
            .ephemeral_1h_input_tokens
            .saturating_sub(oc.ephemeral_1h_input_tokens);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub active_seconds: f64,
    pub duration_seconds: f64,
}

/// `agent` in a session create request.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AgentRef {
    Id(String),
    Pinned(PinnedAgent),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedAgent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: crate::agent::AgentTag,
    #[serde(default)]
    pub version: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub agent: AgentRef,
    pub environment_id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub initial_events: Vec<crate::event::UserEvent>,
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default)]
    pub vault_ids: Vec<String>,
    #[serde(default)]
    pub budget: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    #[serde(default, deserialize_with = "crate::agent::double_option")]
    pub title: Option<Option<String>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub vault_ids: Option<Vec<String>>,
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
            kind: crate::agent::AgentTag,
            version: u32,
            name: &'a str,
            description: &'a Option<String>,
            system: &'a Option<String>,
            model: &'a crate::agent::ModelConfig,
            tools: &'a [crate::agent::Tool],
            mcp_servers: &'a [crate::agent::McpServer],
            skills: &'a [Value],
            multiagent: &'a Option<crate::agent::Multiagent>,
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

/// Where an outcome stands, as `session.outcome_evaluations` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvaluation {
    #[serde(rename = "type")]
    pub kind: OutcomeEvaluationTag,
    pub outcome_id: String,
    pub description: String,
    pub iteration: u32,
    /// `pending`, `running`, `evaluating`, then `satisfied`, `needs_revision`,
    /// `max_iterations_reached`, `failed` or `interrupted`.
    pub result: String,
    pub explanation: Option<String>,
    pub completed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeEvaluationTag {
    OutcomeEvaluation,
}
