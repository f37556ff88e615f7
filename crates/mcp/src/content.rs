//! An MCP tool result as the log's content blocks, within the size cap.

use agentd_wire::ContentBlock;
use serde_json::Value;

use crate::client::CallResult;
use crate::error::Error;

/// Text and images keep their kind; anything else (resources, audio, links) is shown to the
/// model as its JSON, so nothing the server said is dropped silently.
pub(crate) fn convert(
    server: &str,
    content: &[Value],
    structured: Option<&Value>,
    is_error: bool,
    cap: usize,
) -> Result<CallResult, Error> {
    let too_large = |bytes| Error::TooLarge {
        server: server.to_owned(),
        bytes,
        cap,
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for item in content {
        let block = match item.get("type").and_then(Value::as_str) {
            Some("text") => {
                ContentBlock::text(item.get("text").and_then(Value::as_str).unwrap_or_default())
            }
            Some("image") => ContentBlock::Image {
                source: serde_json::json!({
                    "type": "base64",
                    "media_type": item.get("mimeType").cloned().unwrap_or(Value::Null),
                    "data": item.get("data").cloned().unwrap_or(Value::Null),
                }),
            },
            _ => ContentBlock::text(item.to_string()),
        };
        bytes += size(&block);
        if bytes > cap {
            return Err(too_large(bytes));
        }
        out.push(block);
    }
    if out.is_empty()
        && let Some(s) = structured
    {
        let block = ContentBlock::text(s.to_string());
        bytes += size(&block);
        if bytes > cap {
            return Err(too_large(bytes));
        }
        out.push(block);
    }
    Ok(CallResult {
        content: out,
        is_error,
    })
}

fn size(b: &ContentBlock) -> usize {
    match b {
        ContentBlock::Text { text } => text.len(),
        other => serde_json::to_string(other).map_or(0, |s| s.len()),
    }
}
