//! Incremental loading's saved position, and the record of each resource's
//! last complete run.
//!
//! A resource with `[resources.NAME.incremental]` asks only for records
//! from its position on: the largest value of its cursor field among the
//! records of its last complete run, less the look-back window. The
//! position is written only once every page of a run was archived and its
//! message confirmed by SQS, so a run killed at any point leaves the old
//! one, and the next run reads again what the killed one may have missed;
//! the transformer's upserts make a page read twice land once.
//!
//! It is kept in the bucket, beside the pages' state, at
//! `_state/<prefix>/resources/<name>.json`: an ECS task starts with an
//! empty disk, and every run sees the same position.

use pipeline_core::object::ObjectRef;
use pipeline_core::spec::Epoch;
use pipeline_core::spec::read::Buffer;
use pipeline_core::spec::request::{CursorForm, Incremental};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use crate::archive::ArchiveError;
use crate::page_state::{get_json, put_json};

/// A value of a cursor field.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Position {
    Whole(i64),
    Time(OffsetDateTime),
    Date(Date),
    Text(String),
}

impl Position {
    /// The largest value of a column's buffer, nulls aside.
    pub fn max_of(buffer: &Buffer) -> Option<Self> {
        match buffer {
            Buffer::BigInt(v) => v.iter().flatten().max().map(|&n| Self::Whole(n)),
            Buffer::Integer(v) => v.iter().flatten().max().map(|&n| Self::Whole(n.into())),
            Buffer::Timestamptz(v) => v.iter().flatten().max().map(|&t| Self::Time(t)),
            Buffer::Date(v) => v.iter().flatten().max().map(|&d| Self::Date(d)),
            Buffer::Text(v) => v.iter().flatten().max().map(|s| Self::Text(s.clone())),
            // The file allows no other type for a cursor field.
            _ => None,
        }
    }

    /// The larger of two.
    pub fn larger(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b > a { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// As it is saved: exact, and readable by an operator.
    fn saved(&self) -> String {
        match self {
            Self::Whole(n) => n.to_string(),
            Self::Time(t) => rfc3339(*t),
            Self::Date(d) => d.to_string(),
            Self::Text(s) => s.clone(),
        }
    }

    fn from_saved(text: &str, form: CursorForm) -> Option<Self> {
        Some(match form {
            CursorForm::Whole => Self::Whole(text.parse().ok()?),
            CursorForm::Rfc3339 | CursorForm::Epoch(_) => {
                Self::Time(OffsetDateTime::parse(text, &Rfc3339).ok()?)
            }
            CursorForm::Date => Self::Date(
                Date::parse(
                    text,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .ok()?,
            ),
            CursorForm::Text => Self::Text(text.to_owned()),
        })
    }

    /// What a run sends as the cursor parameter from here: less the
    /// look-back, in the form of the field.
    pub fn sent(&self, incremental: &Incremental) -> String {
        let back = incremental.lookback;
        match (self, incremental.form) {
            (Self::Time(t), CursorForm::Epoch(Epoch::Seconds)) => {
                (*t - back).unix_timestamp().to_string()
            }
            (Self::Time(t), CursorForm::Epoch(Epoch::Milliseconds)) => {
                ((*t - back).unix_timestamp_nanos() / 1_000_000).to_string()
            }
            (Self::Time(t), _) => rfc3339(*t - back),
            (Self::Date(d), _) => {
                // Whole days, rounded up: a look-back never reads less.
                let days = back.as_secs().div_ceil(86_400) as i64;
                (*d - time::Duration::days(days)).to_string()
            }
            (other, _) => other.saved(),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|e| unreachable!("a time in range: {e}"))
}

/// A resource's last complete run, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteRun {
    pub resource: String,
    /// RFC 3339.
    pub started_at: String,
    pub completed_at: String,
    /// Pages archived and announced, or skipped as unchanged, and their
    /// records.
    pub pages: u64,
    pub records: u64,
    /// With incremental loading: the largest cursor value read so far.
    pub position: Option<String>,
    /// What the run sent as its cursor parameter, if anything.
    pub sent: Option<String>,
}

impl CompleteRun {
    /// Its position, read as its field's type.
    pub fn position(&self, incremental: &Incremental) -> Option<Position> {
        Position::from_saved(self.position.as_deref()?, incremental.form)
    }

    pub fn new(
        resource: &str,
        started_at: OffsetDateTime,
        pages: u64,
        records: u64,
        position: Option<&Position>,
        sent: Option<String>,
    ) -> Self {
        Self {
            resource: resource.to_owned(),
            started_at: rfc3339(started_at),
            completed_at: rfc3339(OffsetDateTime::now_utc()),
            pages,
            records,
            position: position.map(Position::saved),
            sent,
        }
    }
}

/// Where each resource's last complete run is kept.
#[derive(Debug, Clone)]
pub struct ResourceState {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl ResourceState {
    pub fn new(s3: aws_sdk_s3::Client, bucket: String, key_prefix: &str) -> Self {
        Self {
            s3,
            bucket,
            prefix: format!("_state/{key_prefix}/resources"),
        }
    }

    pub fn object(&self, resource: &str) -> ObjectRef {
        ObjectRef::new(&self.bucket, format!("{}/{resource}.json", self.prefix))
    }

    pub async fn get(&self, resource: &str) -> Result<Option<CompleteRun>, ArchiveError> {
        get_json(&self.s3, &self.object(resource)).await
    }

    pub async fn put(&self, run: &CompleteRun) -> Result<(), ArchiveError> {
        put_json(&self.s3, &self.object(&run.resource), run).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn incremental(form: CursorForm, lookback: u64) -> Incremental {
        Incremental {
            column: 0,
            param: "since".into(),
            initial: None,
            lookback: Duration::from_secs(lookback),
            form,
        }
    }

    #[test]
    fn the_position_sent_is_the_saved_one_less_the_look_back_in_the_fields_form() {
        let t = OffsetDateTime::parse("2026-03-01T10:00:00.5+02:00", &Rfc3339).unwrap();
        let saved = Position::Time(t).saved();
        assert_eq!(saved, "2026-03-01T08:00:00.5Z");
        let back = Position::from_saved(&saved, CursorForm::Rfc3339).unwrap();
        assert_eq!(back, Position::Time(t));
        assert_eq!(
            back.sent(&incremental(CursorForm::Rfc3339, 600)),
            "2026-03-01T07:50:00.5Z"
        );
        assert_eq!(
            back.sent(&incremental(CursorForm::Epoch(Epoch::Seconds), 0)),
            "1772352000"
        );
        assert_eq!(
            back.sent(&incremental(CursorForm::Epoch(Epoch::Milliseconds), 1)),
            "1772351999500"
        );
        let day = Position::from_saved("2026-03-01", CursorForm::Date).unwrap();
        assert_eq!(
            day.sent(&incremental(CursorForm::Date, 3_600)),
            "2026-02-28"
        );
        assert_eq!(
            Position::Whole(41).sent(&incremental(CursorForm::Whole, 0)),
            "41"
        );
    }

    #[test]
    fn the_largest_value_is_kept() {
        let buffer = Buffer::BigInt(vec![Some(3), None, Some(9), Some(4)]);
        assert_eq!(Position::max_of(&buffer), Some(Position::Whole(9)));
        assert_eq!(
            Position::larger(Some(Position::Whole(9)), Some(Position::Whole(12))),
            Some(Position::Whole(12))
        );
        assert_eq!(
            Position::larger(None, Some(Position::Whole(1))),
            Some(Position::Whole(1))
        );
        assert_eq!(Position::max_of(&Buffer::Text(vec![None])), None);
    }
}
