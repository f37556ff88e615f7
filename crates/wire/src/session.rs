//! Sessions: a running agent with its log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Timestamp;
use crate::agent::SessionAgent;
use crate::usage::Usage;

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
    pub resources: Vec<crate::resource::Resource>,
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

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub active_seconds: f64,
    pub duration_seconds: f64,
}

/// `agent` in a session create request: an agent's id (its latest version), a reference to a
/// version, or a reference with overrides. Parsed apart from the rest of the request, by its
/// `type`, so that an error inside it names its full path.
#[derive(Debug, Clone)]
pub enum AgentParam {
    Id(String),
    Agent(PinnedAgent),
    WithOverrides(AgentWithOverrides),
}

impl AgentParam {
    /// The `type`s of the object forms.
    pub const TYPES: &[&str] = &["agent", "agent_with_overrides"];
}

/// `{"type": "agent", ...}` without its `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedAgent {
    pub id: String,
    #[serde(default)]
    pub version: Option<u32>,
}

/// `{"type": "agent_with_overrides", ...}` without its `type`: each field given replaces the
/// agent's for this session only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentWithOverrides {
    pub id: String,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub model: Option<crate::agent::ModelParam>,
    /// `null` clears the agent's system prompt.
    #[serde(default, deserialize_with = "crate::agent::double_option")]
    pub system: Option<Option<String>>,
    #[serde(default)]
    pub tools: Option<Vec<crate::agent::ToolParam>>,
    #[serde(default)]
    pub mcp_servers: Option<Vec<crate::agent::McpServer>>,
    #[serde(default)]
    pub skills: Option<Vec<Value>>,
}

impl AgentWithOverrides {
    /// `base` with these overrides applied.
    pub fn apply(self, base: &crate::agent::AgentSpec) -> crate::agent::AgentSpec {
        let mut s = base.clone();
        if let Some(m) = self.model {
            s.model = m.into();
        }
        if let Some(p) = self.system {
            s.system = p;
        }
        if let Some(t) = self.tools {
            s.tools = t.into_iter().map(Into::into).collect();
        }
        if let Some(m) = self.mcp_servers {
            s.mcp_servers = m;
        }
        if let Some(k) = self.skills {
            s.skills = k;
        }
        s
    }
}

/// A session create request but its `agent` (see `AgentParam`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
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

/// Where an outcome stands, as `session.outcome_evaluations` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvaluation {
    #[serde(rename = "type")]
    pub kind: OutcomeEvaluationTag,
    pub outcome_id: String,
    pub description: String,
    pub iteration: u32,
    pub result: crate::event::OutcomeResult,
    pub explanation: Option<String>,
    pub completed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeEvaluationTag {
    OutcomeEvaluation,
}
