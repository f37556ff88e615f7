//! List prices: what a model call's tokens cost, by model id. Claude models carry Anthropic's
//! public list prices; every other model (local, scripted, a named provider's) costs nothing
//! unless the operator's price file (`--prices`) names it. The same table serves any model
//! call agentd makes: turns, outcome grading, compaction, threads.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::Usage;

/// One model's rates, in picodollars per token (= microdollars per million tokens), so a
/// call's cost is an exact integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Writing the prompt cache (agentd asks for the default five-minute lifetime).
    pub cache_write: u64,
    pub cache_read: u64,
}

impl Price {
    /// Rates from USD per million tokens, with the cache rates Anthropic derives from the
    /// input rate (writes ×1.25, reads ×0.1) unless given.
    fn per_mtok(
        input: f64,
        output: f64,
        cache_write: Option<f64>,
        cache_read: Option<f64>,
    ) -> Self {
        let micro = |usd: f64| (usd * 1e6).round() as u64;
        Price {
            input: micro(input),
            output: micro(output),
            cache_write: micro(cache_write.unwrap_or(input * 1.25)),
            cache_read: micro(cache_read.unwrap_or(input * 0.1)),
        }
    }

    /// What `u` costs at these rates, picodollars.
    pub fn cost(&self, u: &Usage) -> u64 {
        u.input_tokens * self.input
            + u.output_tokens * self.output
            + u.cache_creation_input_tokens * self.cache_write
            + u.cache_read_input_tokens * self.cache_read
    }
}

/// Anthropic's public list prices, USD per million tokens (input, output; cache writes and
/// reads follow the standard multipliers), as published on anthropic.com/pricing. A dated id
/// (`claude-sonnet-4-5-20250929`) or a `-latest` alias takes its family's price.
const CLAUDE: &[(&str, f64, f64)] = &[
    ("claude-opus-4-6", 5.0, 25.0),
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4-0", 15.0, 75.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4-6", 3.0, 15.0),
    ("claude-sonnet-4-5", 3.0, 15.0),
    ("claude-sonnet-4-0", 3.0, 15.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-opus", 15.0, 75.0),
];

/// The price table: the operator's entries first, then the built-in Claude list prices.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// Exact model ids (also matching their dated and `-latest` forms).
    exact: BTreeMap<String, Price>,
    /// `prefix*` entries; the longest matching prefix wins.
    prefixes: Vec<(String, Price)>,
}

impl Default for Prices {
    /// The built-in table alone.
    fn default() -> Self {
        let mut exact: BTreeMap<String, Price> = CLAUDE
            .iter()
            .map(|(id, i, o)| ((*id).to_owned(), Price::per_mtok(*i, *o, None, None)))
            .collect();
        // Claude Haiku 3 rounds its cache rates differently from the multipliers.
        exact.insert(
            "claude-3-haiku".into(),
            Price::per_mtok(0.25, 1.25, Some(0.30), Some(0.03)),
        );
        Prices {
            exact,
            prefixes: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesFile {
    #[serde(default)]
    prices: BTreeMap<String, PriceEntry>,
}

/// USD per million tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    input: f64,
    output: f64,
    cache_write: Option<f64>,
    cache_read: Option<f64>,
}

impl Prices {
    /// The built-in table with the entries of the YAML file at `path` over it.
    pub fn load(path: &Path) -> Result<Prices, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// `name` only labels error messages.
    pub fn parse(name: &str, text: &str) -> Result<Prices, String> {
        let file: PricesFile =
            yaml_serde::from_str(text).map_err(|e| crate::yaml::error(name, &e))?;
        let mut prices = Prices::default();
        for (model, e) in file.prices {
            let rates = [
                ("input", Some(e.input)),
                ("output", Some(e.output)),
                ("cache_write", e.cache_write),
                ("cache_read", e.cache_read),
            ];
            for (field, v) in rates {
                if let Some(v) = v.filter(|v| !(v.is_finite() && (0.0..=1e6).contains(v))) {
                    return Err(format!(
                        "{name}: prices.{model}.{field}: {v} is not a price in USD per million tokens from 0 to 1000000"
                    ));
                }
            }
            let price = Price::per_mtok(e.input, e.output, e.cache_write, e.cache_read);
            match model.strip_suffix('*') {
                Some(prefix) => prices.prefixes.push((prefix.to_owned(), price)),
                None => {
                    prices.exact.insert(model, price);
                }
            }
        }
        prices
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(prices)
    }

    /// The price of `model`; None for a model the table does not name (it costs nothing).
    pub fn price(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.exact.get(model) {
            return Some(*p);
        }
        // `claude-x-20250101` and `claude-x-latest` are claude-x.
        if let Some((family, suffix)) = model.rsplit_once('-')
            && (suffix == "latest"
                || (suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_digit())))
            && let Some(p) = self.exact.get(family)
        {
            return Some(*p);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .map(|(_, p)| *p)
    }

    /// What `usage` cost on `model`, picodollars.
    pub fn cost(&self, model: &str, usage: &Usage) -> u64 {
        self.price(model).map_or(0, |p| p.cost(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64, write: u64, read: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: write,
            cache_read_input_tokens: read,
        }
    }

    #[test]
    fn claude_models_have_list_prices_in_every_spelling() {
        let p = Prices::default();
        // A million input and a million output tokens of Sonnet: $3 + $15.
        let m = tokens(1_000_000, 1_000_000, 0, 0);
        assert_eq!(p.cost("claude-sonnet-4-6", &m), 18_000_000_000_000);
        assert_eq!(p.cost("claude-sonnet-4-5-20250929", &m), 18_000_000_000_000);
        assert_eq!(p.cost("claude-3-5-haiku-latest", &m), 4_800_000_000_000);
        // Opus 4 dated is the old Opus; Opus 4.5 is not.
        assert_eq!(p.cost("claude-opus-4-20250514", &m), 90_000_000_000_000);
        assert_eq!(p.cost("claude-opus-4-5-20251101", &m), 30_000_000_000_000);
        // Cache writes ×1.25, reads ×0.1 of the input rate.
        let cache = tokens(0, 0, 1_000_000, 1_000_000);
        assert_eq!(
            p.cost("claude-sonnet-4-6", &cache),
            3_750_000_000_000 + 300_000_000_000
        );
        assert_eq!(
            p.cost("claude-3-haiku-20240307", &cache),
            300_000_000_000 + 30_000_000_000
        );
        // A family not in the table is not guessed at from a shorter name.
        assert_eq!(p.price("claude-opus-4-7"), None);
    }

    #[test]
    fn other_models_cost_nothing_unless_the_operator_prices_them() {
        let m = tokens(1000, 100, 0, 0);
        assert_eq!(Prices::default().cost("scripted/echo", &m), 0);
        assert_eq!(Prices::default().cost("local/smollm2", &m), 0);
        let p = Prices::parse(
            "prices.yaml",
            "prices:\n  scripted/*: {input: 2, output: 10}\n  scripted/costly: {input: 1000, output: 2000}\n  claude-sonnet-4-6: {input: 1, output: 1, cache_read: 0}\n",
        )
        .unwrap();
        assert_eq!(
            p.cost("scripted/echo", &m),
            1000 * 2_000_000 + 100 * 10_000_000
        );
        assert_eq!(
            p.cost("scripted/costly", &m),
            1000 * 1_000_000_000 + 100 * 2_000_000_000
        );
        // An operator's entry replaces the list price.
        assert_eq!(p.cost("claude-sonnet-4-6", &tokens(0, 0, 0, 5)), 0);
        assert_eq!(p.cost("claude-sonnet-4-6", &tokens(1, 0, 0, 0)), 1_000_000);
    }

    #[test]
    fn a_bad_price_file_is_refused_naming_the_field() {
        let e = Prices::parse("p.yaml", "prices:\n  m: {input: -1, output: 0}\n").unwrap_err();
        assert!(e.contains("prices.m.input"), "{e}");
        let e = Prices::parse("p.yaml", "prices:\n  m: {input: 1, outptu: 0}\n").unwrap_err();
        assert!(e.starts_with("p.yaml:"), "{e}");
    }
}
