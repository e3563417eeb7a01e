//! `transformer quarantine`: the records that were not valid posts, to read
//! them, or to export them as a JSON array that can be fixed and fed back
//! with `importer load`.

use clap::Args;
use pipeline_core::exit::BadInput;
use pipeline_core::settings::parse_time;
use pipeline_store::inspect::{self, QuarantineFilter, Quarantined};
use serde::Serialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// `transformer quarantine`'s own options.
#[derive(Debug, Clone, Args)]
pub struct Quarantine {
    /// Only the records of this object, s3://bucket/key.
    #[arg(long, value_name = "S3_URI", value_parser = parse_s3_uri)]
    pub object: Option<String>,
    /// Only the records of objects of this resource (e.g. posts). An export holds
    /// one resource's records, to load back with `importer load --resource`.
    #[arg(long, value_name = "NAME")]
    pub resource: Option<String>,
    /// Only records quarantined at or after this time (RFC 3339, e.g. 2026-11-30T08:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// At most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Print one JSON array of the raw records, exactly as received, for fixing and
    /// `importer load`; without it, one line per record: object, index, reason, raw.
    #[arg(long, conflicts_with = "json")]
    pub export: bool,
    /// Print the records as a JSON array of {object, resource, sha256, index, reason, raw,
    /// quarantined_at}.
    #[arg(long)]
    pub json: bool,
}

/// A quarantined record as `--json` prints it.
#[derive(Serialize)]
struct Listed<'a> {
    object: &'a str,
    resource: &'a str,
    sha256: &'a str,
    index: i64,
    reason: &'a str,
    /// The record itself when it is JSON (it always is: it was an element
    /// of a JSON array), else its text.
    raw: Raw<'a>,
    #[serde(with = "time::serde::rfc3339")]
    quarantined_at: OffsetDateTime,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Raw<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl<'a> Raw<'a> {
    fn of(raw: &'a str) -> Self {
        serde_json::from_str::<&RawValue>(raw).map_or(Self::Text(raw), Self::Json)
    }
}

impl Quarantine {
    /// Reads the records and prints them on stdout; returns how many.
    pub async fn run(
        &self,
        conn: &mut pipeline_store::Client,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<usize> {
        let filter = QuarantineFilter {
            object: self.object.as_deref(),
            resource: self.resource.as_deref(),
            since: self.since,
            limit: self.limit.map(i64::from),
        };
        let records = inspect::quarantined(conn, &filter).await?;
        if self.export {
            let mut resources: Vec<&str> = records.iter().map(|r| r.resource.as_str()).collect();
            resources.sort_unstable();
            resources.dedup();
            if let [first, second, ..] = resources[..] {
                return Err(BadInput(format!(
                    "the records are of {first} and {second}: export one resource at a time, with --resource"
                ))
                .into());
            }
            write_export(out, &records)?;
        } else if self.json {
            let listed: Vec<Listed<'_>> = records.iter().map(listed).collect();
            serde_json::to_writer_pretty(&mut *out, &listed)?;
            writeln!(out)?;
        } else {
            for r in &records {
                writeln!(
                    out,
                    "{}  {}  {}  {}",
                    r.source_object,
                    r.record_index,
                    r.reason.replace(['\n', '\r'], " "),
                    r.raw.replace(['\n', '\r'], " ")
                )?;
            }
        }
        Ok(records.len())
    }
}

fn listed(r: &Quarantined) -> Listed<'_> {
    Listed {
        object: &r.source_object,
        resource: &r.resource,
        sha256: &r.sha256,
        index: r.record_index,
        reason: &r.reason,
        raw: Raw::of(&r.raw),
        quarantined_at: r.quarantined_at,
    }
}

/// `[\n<raw>,\n<raw>\n]`: each record exactly as received, one per line, so
/// that fixing them is editing lines.
fn write_export(out: &mut impl std::io::Write, records: &[Quarantined]) -> std::io::Result<()> {
    writeln!(out, "[")?;
    for (i, r) in records.iter().enumerate() {
        let comma = if i + 1 < records.len() { "," } else { "" };
        match Raw::of(&r.raw) {
            Raw::Json(json) => writeln!(out, "{}{comma}", json.get())?,
            // Not JSON (it cannot happen: it was an array element): as a
            // string, so the export stays an array.
            Raw::Text(text) => writeln!(
                out,
                "{}{comma}",
                serde_json::to_string(text).unwrap_or_default()
            )?,
        }
    }
    writeln!(out, "]")
}

fn parse_s3_uri(value: &str) -> Result<String, String> {
    match value
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(value.to_owned()),
        _ => Err("expected s3://bucket/key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: i64, raw: &str) -> Quarantined {
        Quarantined {
            source_object: "s3://raw/posts/a.json".into(),
            sha256: "ab".repeat(32),
            record_index: index,
            reason: "record 1: field `id`: missing".into(),
            raw: raw.into(),
            quarantined_at: OffsetDateTime::UNIX_EPOCH,
            resource: "posts".into(),
        }
    }

    #[test]
    fn the_export_is_a_json_array_of_the_records_as_received() {
        let records = [record(1, r#"{"userId": 1,  "title": "x"}"#), record(4, "7")];
        let mut out = Vec::new();
        write_export(&mut out, &records).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "[\n{\"userId\": 1,  \"title\": \"x\"},\n7\n]\n");
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        let mut empty = Vec::new();
        write_export(&mut empty, &[]).unwrap();
        assert_eq!(
            serde_json::from_slice::<Vec<u8>>(&empty).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn objects_are_s3_uris_and_times_rfc_3339() {
        assert!(parse_s3_uri("s3://raw/posts/a.json").is_ok());
        assert!(parse_s3_uri("raw/posts/a.json").is_err());
        assert!(parse_s3_uri("s3://raw/").is_err());
        assert!(parse_time("2026-11-30T08:00:00Z").is_ok());
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
