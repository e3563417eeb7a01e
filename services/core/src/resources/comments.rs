//! `comments`: a comment on a post as JSONPlaceholder serves it.
//!
//! No foreign key ties a comment to its post: objects of the two resources
//! arrive in any order, and a comment may well be applied before its post.

use serde::{Deserialize, Serialize};

use crate::record::{Column, Record, Table, rules};

/// One comment, `{"postId": int, "id": int, "name": str, "email": str, "body": str}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub post_id: i64,
    pub id: i64,
    pub name: String,
    pub email: String,
    pub body: String,
}

/// Longest `name` accepted, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 4 * 1024;
/// Longest `body` accepted, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

impl Record for Comment {
    const RESOURCE: &'static str = "comments";
    const TABLE: Table = Table {
        name: "comments",
        key: "id",
    };

    fn key(&self) -> i64 {
        self.id
    }

    fn check(&self) -> Result<(), String> {
        rules::positive("id", self.id)?;
        rules::positive("postId", self.post_id)?;
        rules::text("name", &self.name, MAX_NAME_BYTES)?;
        email("email", &self.email)?;
        rules::text("body", &self.body, MAX_BODY_BYTES)
    }

    fn columns<'a>(rows: &[&'a Self]) -> Vec<Column<'a>> {
        vec![
            Column::big_int("post_id", rows, |c| c.post_id),
            Column::text("name", rows, |c| &c.name),
            Column::text("email", rows, |c| &c.email),
            Column::text("body", rows, |c| &c.body),
        ]
    }
}

/// An e-mail address as RFC 5322 writes one (`local@domain`), checked by
/// the `email_address` crate.
fn email(field: &str, value: &str) -> Result<(), String> {
    if email_address::EmailAddress::is_valid(value) {
        Ok(())
    } else {
        Err(format!(
            "field `{field}`: {value:?} is not an e-mail address"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_records;

    #[test]
    fn a_comment_whose_email_is_not_an_address_is_a_bad_record() {
        let body = r#"[{"postId":1,"id":1,"name":"n","email":"Eliseo@gardner.biz","body":"b"},
                       {"postId":1,"id":2,"name":"n","email":"not an address","body":"b"},
                       {"postId":1,"id":3,"name":"n","email":"a@","body":"b"},
                       {"postId":0,"id":4,"name":"n","email":"a@b.c","body":"b"},
                       {"postId":1,"id":5,"name":"n","body":"b"}]"#;
        let records = parse_records::<Comment>(body.as_bytes()).expect("an array");
        assert_eq!(records.rows.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
        let reasons: Vec<_> = records
            .bad
            .iter()
            .map(|b| (b.index, b.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    1,
                    r#"field `email`: "not an address" is not an e-mail address"#
                ),
                (2, r#"field `email`: "a@" is not an e-mail address"#),
                (
                    3,
                    "field `postId`: 0 is out of range (1 to 9223372036854775807)"
                ),
                (4, "missing field `email`"),
            ]
        );
    }

    #[test]
    fn its_columns_are_those_of_the_table_in_row_order() {
        let comment = |id, email: &str| Comment {
            post_id: 7,
            id,
            name: format!("n{id}"),
            email: email.to_owned(),
            body: "b".to_owned(),
        };
        let (a, b) = (comment(1, "a@x.io"), comment(2, "b@x.io"));
        let columns = Comment::columns(&[&b, &a]);
        let names: Vec<_> = columns.iter().map(|c| c.name).collect();
        assert_eq!(names, ["post_id", "name", "email", "body"]);
        assert_eq!(
            columns[2].values,
            crate::record::Values::Text(vec!["b@x.io", "a@x.io"])
        );
    }
}
