//! Token usage: what one model request spent, and what a session or thread spent in all.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl ModelUsage {
    pub fn add(&mut self, o: &ModelUsage) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_creation_input_tokens += o.cache_creation_input_tokens;
        self.cache_read_input_tokens += o.cache_read_input_tokens;
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
    pub fn add(&mut self, m: &ModelUsage) {
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
