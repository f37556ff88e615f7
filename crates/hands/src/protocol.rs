//! The pipe protocol between agentd and the helper inside a sandbox: one JSON object per
//! line each way, answered in order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub tool: String,
    pub input: Value,
}

/// A tool's answer: text for the model, whether it is an error, an image when the tool read
/// one, and a check's exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub text: String,
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// A check command's exit status (the `check` call only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// An image as the Messages API takes it: a media type and base64 data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub media_type: String,
    pub data: String,
}

impl Output {
    pub fn ok(text: impl Into<String>) -> Self {
        Output {
            text: text.into(),
            is_error: false,
            image: None,
            exit_code: None,
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Output {
            text: text.into(),
            is_error: true,
            image: None,
            exit_code: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub output: Output,
}
