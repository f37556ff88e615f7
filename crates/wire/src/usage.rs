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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_seconds: Option<f64>,
    /// What the tokens cost at list prices; filled in where a session or thread is shown (its
    /// exact figure is kept beside the usage, in `agentd_session::projection`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_cost: Option<MonetaryAmount>,
}

/// An amount of money as the SDK's `BetaMonetaryAmount` spells it: minor units (cents) as a
/// decimal string, so no float rounding is ever applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonetaryAmount {
    pub amount: String,
    pub currency: String,
}

/// Picodollars (10⁻¹² USD): the exact unit costs add up in, so that summing many small calls
/// never rounds; shown rounded to the cent.
pub const PICO_USD_PER_CENT: u64 = 10_000_000_000;

impl MonetaryAmount {
    /// `pico_usd` rounded to the nearest cent, in USD.
    pub fn usd_from_pico(pico_usd: u64) -> Self {
        let cents = pico_usd / PICO_USD_PER_CENT
            + u64::from(pico_usd % PICO_USD_PER_CENT >= PICO_USD_PER_CENT / 2);
        MonetaryAmount {
            amount: cents.to_string(),
            currency: "USD".into(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_is_shown_to_the_nearest_cent() {
        let c = |p| MonetaryAmount::usd_from_pico(p).amount;
        assert_eq!(c(0), "0");
        assert_eq!(c(PICO_USD_PER_CENT / 2 - 1), "0");
        assert_eq!(c(PICO_USD_PER_CENT / 2), "1");
        assert_eq!(c(250 * PICO_USD_PER_CENT + 1), "250");
        assert_eq!(MonetaryAmount::usd_from_pico(1).currency, "USD");
    }
}
