//! The record the pipeline moves: a blog post as JSONPlaceholder serves it.

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// One post, `{"userId": int, "id": int, "title": str, "body": str}`.
///
/// Unknown fields are ignored, so an API that adds a field does not stop the
/// pipeline; a missing or mistyped known field is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    pub user_id: i64,
    pub id: i64,
    pub title: String,
    pub body: String,
}

/// Why a body is not a JSON array of posts. The message says where: the
/// record index and field when one record is at fault, the position in the
/// body when the JSON itself is broken.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PostsError(#[from] serde_json::Error);

/// Parses a whole body as a JSON array of posts.
pub fn parse_posts(body: &[u8]) -> Result<Vec<Post>, PostsError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let posts = PostsSeed.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(posts)
}

/// Deserializes the top-level array element by element, so that an error in
/// one record names its index (`record 41: missing field `title``) instead of
/// only a line and column.
struct PostsSeed;

impl<'de> DeserializeSeed<'de> for PostsSeed {
    type Value = Vec<Post>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PostsSeed {
    type Value = Vec<Post>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of posts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut posts = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element::<Post>() {
                Ok(Some(post)) => posts.push(post),
                Ok(None) => return Ok(posts),
                Err(e) => {
                    return Err(de::Error::custom(format_args!(
                        "record {}: {e}",
                        posts.len()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_posts_and_ignores_unknown_fields() {
        let body = br#"[{"userId":1,"id":2,"title":"t","body":"b","extra":true}]"#;
        let posts = parse_posts(body).expect("valid body");
        assert_eq!(
            posts,
            vec![Post {
                user_id: 1,
                id: 2,
                title: "t".into(),
                body: "b".into()
            }]
        );
    }

    #[test]
    fn an_object_is_not_an_array() {
        let err = parse_posts(br#"{"id":1}"#).unwrap_err().to_string();
        assert!(err.contains("expected a JSON array of posts"), "{err}");
    }

    #[test]
    fn a_bad_record_is_named_by_index_and_field() {
        let body = br#"[{"userId":1,"id":1,"title":"a","body":"b"},{"userId":1,"id":"2","title":"a","body":"b"}]"#;
        let err = parse_posts(body).unwrap_err().to_string();
        assert!(
            err.starts_with("record 1: invalid type: string \"2\""),
            "{err}"
        );

        let body = br#"[{"userId":1,"id":1,"body":"b"}]"#;
        let err = parse_posts(body).unwrap_err().to_string();
        assert!(err.starts_with("record 0: missing field `title`"), "{err}");
    }

    #[test]
    fn truncated_and_trailing_bodies_are_errors() {
        assert!(parse_posts(br#"[{"userId":1,"id":1,"title":"a","body":"b"}"#).is_err());
        assert!(parse_posts(br#"[] []"#).is_err());
        assert!(parse_posts(b"").is_err());
    }

    #[test]
    fn an_empty_array_is_valid() {
        assert_eq!(parse_posts(b" [ ] ").expect("empty array"), vec![]);
    }
}
