//! Chat messages and the validation every transport applies to a post.

use serde::{Deserialize, Serialize};

/// One stored chat message, as every transport sends it.
///
/// `id` is assigned by the server and strictly increasing; `time` is milliseconds since the
/// Unix epoch (JavaScript's `Date.now()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub user: String,
    pub text: String,
    pub time: i64,
}

/// A validated post, ready to be stored: the hub only accepts these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPost {
    pub user: String,
    pub text: String,
}

/// Size limits for posts, shared by every transport so they all reject the same input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum length of `user`, in characters (Unicode scalar values).
    pub max_user: usize,
    /// Maximum length of `text`, in characters (Unicode scalar values).
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_user: 64,
            max_text: 2000,
        }
    }
}

/// Why a post was refused. The `Display` text is what clients see in `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body must be a JSON object with \"user\" and \"text\"")]
    NotAnObject,
    #[error("\"{0}\" is missing")]
    Missing(&'static str),
    #[error("\"{0}\" must be a string")]
    NotAString(&'static str),
    #[error("\"{0}\" must not be empty")]
    Empty(&'static str),
    #[error("\"{field}\" is too long: {len} characters, at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the message could not be stored: {0}")]
    Store(String),
}

impl PostError {
    /// True when the client sent something wrong (as opposed to a server-side failure).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, PostError::ShuttingDown | PostError::Store(_))
    }
}

impl NewPost {
    /// Parses and validates a post from raw JSON bytes (`{"user": "...", "text": "..."}`).
    ///
    /// Unknown fields are ignored, as the course's clients may send more.
    pub fn from_json(body: &[u8], limits: &Limits) -> Result<NewPost, PostError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| PostError::Json(e.to_string()))?;
        NewPost::from_value(&value, limits)
    }

    /// Validates a post already parsed as JSON (Socket.IO hands us a `Value`).
    pub fn from_value(value: &serde_json::Value, limits: &Limits) -> Result<NewPost, PostError> {
        let obj = value.as_object().ok_or(PostError::NotAnObject)?;
        let user = field(obj, "user", limits.max_user)?;
        let text = field(obj, "text", limits.max_text)?;
        Ok(NewPost { user, text })
    }
}

fn field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
    max: usize,
) -> Result<String, PostError> {
    let value = obj.get(name).ok_or(PostError::Missing(name))?;
    let s = value.as_str().ok_or(PostError::NotAString(name))?;
    if s.trim().is_empty() {
        return Err(PostError::Empty(name));
    }
    let len = s.chars().count();
    if len > max {
        return Err(PostError::TooLong {
            field: name,
            len,
            max,
        });
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NewPost, PostError> {
        NewPost::from_json(body.as_bytes(), &Limits::default())
    }

    #[test]
    fn accepts_a_valid_post_and_ignores_extra_fields() {
        let post = parse(r#"{"user":"ann","text":"hi","extra":1}"#).unwrap();
        assert_eq!(post.user, "ann");
        assert_eq!(post.text, "hi");
    }

    #[test]
    fn rejects_each_kind_of_bad_post() {
        assert!(matches!(parse("{"), Err(PostError::Json(_))));
        assert_eq!(parse("[]"), Err(PostError::NotAnObject));
        assert_eq!(parse(r#"{"text":"x"}"#), Err(PostError::Missing("user")));
        assert_eq!(
            parse(r#"{"user":1,"text":"x"}"#),
            Err(PostError::NotAString("user"))
        );
        assert_eq!(
            parse(r#"{"user":"a","text":"  "}"#),
            Err(PostError::Empty("text"))
        );
        let long = "é".repeat(65);
        assert_eq!(
            parse(&format!(r#"{{"user":"{long}","text":"x"}}"#)),
            Err(PostError::TooLong {
                field: "user",
                len: 65,
                max: 64
            })
        );
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let user = "é".repeat(64);
        assert!(parse(&format!(r#"{{"user":"{user}","text":"x"}}"#)).is_ok());
    }
}
