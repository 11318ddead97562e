//! Chat messages and the validation every transport applies to a post.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// One stored chat message, as every transport sends it.
///
/// `id` is assigned by the server and strictly increasing; `time` is milliseconds since the
/// Unix epoch (JavaScript's `Date.now()`). `uid` is the poster's stable user id when the post
/// was authenticated (identity, issue 15); anonymous posts have none and their JSON no `uid`
/// key, exactly as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub user: String,
    pub text: String,
    pub time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A validated post, ready to be stored: the hub only accepts these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPost {
    pub user: String,
    pub text: String,
    /// The poster's idempotency key: the same key again (same channel, same poster, within
    /// the dedupe window) gets the first post's id instead of a second message.
    pub key: Option<String>,
    /// The authenticated poster's user id (set by the transport from the token, never from
    /// the body).
    pub uid: Option<String>,
}

impl NewPost {
    /// A post without an idempotency key.
    pub fn new(user: impl Into<String>, text: impl Into<String>) -> NewPost {
        NewPost {
            user: user.into(),
            text: text.into(),
            key: None,
            uid: None,
        }
    }
}

/// Who posts, when the server knows (`--auth token`): the user id and display name from the
/// poster's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poster {
    pub uid: String,
    pub name: String,
}

/// The longest idempotency key, in characters.
pub const MAX_KEY: usize = 64;

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
    #[error("\"{field}\" has only invisible characters (zero-width or formatting marks)")]
    Invisible { field: &'static str },
    #[error("\"{field}\" contains the control character {} at character {position}; {allowed}", codepoint(*.ch))]
    ControlChar {
        field: &'static str,
        ch: char,
        /// 1-based, in characters.
        position: usize,
        allowed: &'static str,
    },
    #[error("\"{field}\" contains the bidirectional control {} at character {position}, which can disguise a name", codepoint(*.ch))]
    BidiControl {
        field: &'static str,
        ch: char,
        /// 1-based, in characters.
        position: usize,
    },
    #[error("\"{field}\" is too long: {len} characters, at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("\"key\" must be a string of 1 to {MAX_KEY} characters without control characters")]
    BadKey,
    #[error("\"key\" {key:?} was already used for a different message (id {id}); use a new key for a new message")]
    KeyConflict { key: String, id: u64 },
    /// With `--auth token`, a post's `user` must be the token's name.
    #[error("\"user\" must be your name {name:?} (from your token), not {posted:?}")]
    NotYourName { posted: String, name: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the message could not be stored: {0}")]
    Store(StoreError),
    /// The room cannot be posted in (a bad name, or one room too many).
    #[error("{0}")]
    Room(crate::room::RoomError),
}

impl PostError {
    /// True when the client sent something wrong (as opposed to a server-side failure).
    pub fn is_client_error(&self) -> bool {
        match self {
            PostError::ShuttingDown | PostError::Store(_) => false,
            PostError::Room(e) => e.is_client_error(),
            _ => true,
        }
    }
}

/// `U+XXXX`, how a refused character is named in an error.
fn codepoint(ch: char) -> String {
    format!("U+{:04X}", ch as u32)
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

    /// [`NewPost::from_json`] for an authenticated poster (see [`NewPost::from_value_by`]).
    pub fn from_json_by(
        body: &[u8],
        limits: &Limits,
        poster: Option<&Poster>,
    ) -> Result<NewPost, PostError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| PostError::Json(e.to_string()))?;
        NewPost::from_value_by(&value, limits, poster)
    }

    /// [`NewPost::from_value`], made by `poster` when the server knows who posts (`--auth
    /// token`): a missing `user` is the poster's name, another name is refused
    /// ([`PostError::NotYourName`]), and the post carries the poster's id. `None`: anyone, as
    /// the body says.
    pub fn from_value_by(
        value: &serde_json::Value,
        limits: &Limits,
        poster: Option<&Poster>,
    ) -> Result<NewPost, PostError> {
        let Some(poster) = poster else {
            return NewPost::from_value(value, limits);
        };
        let obj = value.as_object().ok_or(PostError::NotAnObject)?;
        let mut post = if obj.contains_key("user") {
            NewPost::from_value(value, limits)?
        } else {
            let mut named = obj.clone();
            named.insert("user".into(), poster.name.clone().into());
            NewPost::from_value(&named.into(), limits)?
        };
        if post.user != poster.name {
            return Err(PostError::NotYourName {
                posted: post.user,
                name: poster.name.clone(),
            });
        }
        post.uid = Some(poster.uid.clone());
        Ok(post)
    }

    /// Validates a post already parsed as JSON (Socket.IO hands us a `Value`).
    pub fn from_value(value: &serde_json::Value, limits: &Limits) -> Result<NewPost, PostError> {
        let obj = value.as_object().ok_or(PostError::NotAnObject)?;
        let user = field(obj, "user", limits.max_user, Rules::USER)?;
        let text = field(obj, "text", limits.max_text, Rules::TEXT)?;
        let key = match obj.get("key") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(k))
                if !k.is_empty()
                    && k.chars().count() <= MAX_KEY
                    && !k.chars().any(char::is_control) =>
            {
                Some(k.clone())
            }
            Some(_) => return Err(PostError::BadKey),
        };
        Ok(NewPost {
            user,
            text,
            key,
            uid: None,
        })
    }
}

/// Which characters a field may hold besides printable text.
#[derive(Clone, Copy)]
struct Rules {
    /// Newline and tab are allowed (a message may have several lines).
    line_breaks: bool,
    /// Bidirectional embeddings, overrides and isolates are allowed (a message may quote
    /// right-to-left text; a name that flips itself could pass for another).
    bidi_controls: bool,
}

impl Rules {
    const USER: Rules = Rules {
        line_breaks: false,
        bidi_controls: false,
    };
    const TEXT: Rules = Rules {
        line_breaks: true,
        bidi_controls: true,
    };
}

fn field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
    max: usize,
    rules: Rules,
) -> Result<String, PostError> {
    let value = obj.get(name).ok_or(PostError::Missing(name))?;
    let s = value.as_str().ok_or(PostError::NotAString(name))?;
    if s.trim().is_empty() {
        return Err(PostError::Empty(name));
    }
    let mut len = 0;
    let mut visible = false;
    for (i, ch) in s.chars().enumerate() {
        len += 1;
        let position = i + 1;
        if ch.is_control() && !(rules.line_breaks && (ch == '\n' || ch == '\t')) {
            let allowed = if rules.line_breaks {
                "only newline and tab are allowed"
            } else {
                "none are allowed in a name"
            };
            return Err(PostError::ControlChar {
                field: name,
                ch,
                position,
                allowed,
            });
        }
        if !rules.bidi_controls && is_bidi_control(ch) {
            return Err(PostError::BidiControl {
                field: name,
                ch,
                position,
            });
        }
        visible |= !ch.is_whitespace() && !is_invisible(ch);
    }
    if !visible {
        return Err(PostError::Invisible { field: name });
    }
    if len > max {
        return Err(PostError::TooLong {
            field: name,
            len,
            max,
        });
    }
    Ok(s.to_owned())
}

/// Bidirectional embeddings and overrides (U+202A..U+202E) and isolates (U+2066..U+2069).
fn is_bidi_control(ch: char) -> bool {
    matches!(ch, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that draw nothing: Unicode's default-ignorable code points (zero-width spaces
/// and joiners, direction marks, word joiners, variation selectors, Hangul fillers, tags...).
/// Text made only of these (and spaces) looks empty, so it counts as blank.
fn is_invisible(ch: char) -> bool {
    matches!(ch,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
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
    fn refuses_control_characters_except_line_breaks_in_text() {
        assert_eq!(
            parse(r#"{"user":"ann","text":"a\u0000b"}"#),
            Err(PostError::ControlChar {
                field: "text",
                ch: '\0',
                position: 2,
                allowed: "only newline and tab are allowed"
            })
        );
        assert!(matches!(
            parse(r#"{"user":"ann","text":"bell\u0007"}"#),
            Err(PostError::ControlChar { ch: '\u{7}', .. })
        ));
        assert!(matches!(
            parse(r#"{"user":"ann","text":"c1\u0085"}"#),
            Err(PostError::ControlChar { ch: '\u{85}', .. })
        ));
        assert!(matches!(
            parse(r#"{"user":"a\tb","text":"x"}"#),
            Err(PostError::ControlChar { field: "user", .. })
        ));
        let ok = parse(r#"{"user":"ann","text":"two\nlines\tand a tab"}"#).unwrap();
        assert_eq!(ok.text, "two\nlines\tand a tab");
        let e = parse(r#"{"user":"ann","text":"a\u0000b"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"text\" contains the control character U+0000 at character 2; only newline and tab are allowed"
        );
    }

    #[test]
    fn refuses_bidi_controls_in_names_only() {
        for bidi in ["\\u202E", "\\u202A", "\\u2066", "\\u2069"] {
            let body = format!(r#"{{"user":"ann{bidi}nimda","text":"x"}}"#);
            assert!(
                matches!(
                    parse(&body),
                    Err(PostError::BidiControl {
                        field: "user",
                        position: 4,
                        ..
                    })
                ),
                "{bidi}"
            );
        }
        assert!(parse(r#"{"user":"ann","text":"quote \u202Eolleh\u202C"}"#).is_ok());
        // Right-to-left letters themselves are fine in names.
        assert!(parse(r#"{"user":"\u0633\u0627\u0631\u0629","text":"x"}"#).is_ok());
    }

    #[test]
    fn zero_width_only_counts_as_blank() {
        for blank in ["\\u200B", "\\u200B \\u200D\\uFEFF", "\\u2060\\u180E"] {
            let body = format!(r#"{{"user":"ann","text":"{blank}"}}"#);
            assert_eq!(
                parse(&body),
                Err(PostError::Invisible { field: "text" }),
                "{blank}"
            );
        }
        assert_eq!(
            parse(r#"{"user":"\u200B","text":"x"}"#),
            Err(PostError::Invisible { field: "user" })
        );
        // Joiners inside visible text (emoji sequences) are fine.
        assert!(parse(r#"{"user":"ann","text":"\uD83D\uDC69\u200D\uD83D\uDCBB"}"#).is_ok());
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let user = "é".repeat(64);
        assert!(parse(&format!(r#"{{"user":"{user}","text":"x"}}"#)).is_ok());
    }
}
