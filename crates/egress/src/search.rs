//! `web_search` through a search backend the operator runs: any SearXNG instance (or anything
//! answering its JSON API, `GET /search?q=…&format=json`). The backend is agentd's own
//! infrastructure, so the environment's egress policy does not apply to it; the results are
//! text the model reads.

use std::time::Duration;

use crate::FetchError;

/// Results shown at most.
const MAX_RESULTS: usize = 10;

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<Hit>,
}

#[derive(serde::Deserialize)]
struct Hit {
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    content: String,
}

/// Search `query` on the backend at `base` and render the hits as a numbered list.
pub async fn search(base: &str, query: &str) -> Result<String, FetchError> {
    if query.trim().is_empty() {
        return Err(FetchError::Invalid("the query is empty".into()));
    }
    let url = reqwest::Url::parse_with_params(
        &format!("{}/search", base.trim_end_matches('/')),
        &[("q", query), ("format", "json")],
    )
    .map_err(|e| FetchError::Invalid(format!("bad search backend URL {base:?}: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| FetchError::Failed(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| FetchError::Failed(format!("the search backend is unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(FetchError::Failed(format!(
            "the search backend answered HTTP {}",
            resp.status()
        )));
    }
    let answer: Answer = resp
        .json()
        .await
        .map_err(|e| FetchError::Failed(format!("the search backend sent no results JSON: {e}")))?;
    if answer.results.is_empty() {
        return Ok(format!("no results for {query:?}"));
    }
    Ok(answer
        .results
        .iter()
        .take(MAX_RESULTS)
        .enumerate()
        .map(|(i, h)| {
            format!(
                "{}. {}\n   {}\n   {}",
                i + 1,
                h.title.trim(),
                h.url,
                h.content.trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}
