//! `transformer status`: how the pipeline is doing, on one screen: the
//! queue and the dead-letter queue, what the ledger says was applied, the
//! quarantine, and the migrations. `--check` turns it into a probe.

use clap::Args;
use pipeline_store::inspect::{self, Activity};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use crate::queue::{Depth, SqsQueue};

/// `transformer status`'s own options.
#[derive(Debug, Clone, Args)]
pub struct Status {
    /// Print one JSON object instead of the screen, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when something needs a person: messages on the dead-letter queue, pending
    /// migrations, or (with --max-idle) nothing applied for that long.
    #[arg(long)]
    pub check: bool,
    /// With --check: also fail when no object was applied for this long (e.g. 2h). Off by
    /// default: an importer that finds nothing new rightly applies nothing.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          requires = "check")]
    pub max_idle: Option<Duration>,
}

/// Messages on one queue, as SQS counts them (approximately).
#[derive(Debug, Clone, Serialize)]
pub struct QueueState {
    pub url: String,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl QueueState {
    fn new(url: &Url, depth: Depth) -> Self {
        Self {
            url: url.to_string(),
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
        }
    }

    fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub queue: QueueState,
    /// `None`: the queue has no dead-letter queue.
    pub dead_letter_queue: Option<QueueState>,
    /// What the ledger says; `None` when its tables are not there yet.
    #[serde(flatten)]
    pub ledger: Option<Ledger>,
    pub pending_migrations: Vec<String>,
    /// What `--check` fails on; empty when all is well.
    pub problems: Vec<String>,
}

/// What was applied, and the quarantine.
#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub applied_last_hour: Activity,
    pub applied_last_day: Activity,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_applied_at: Option<OffsetDateTime>,
    pub quarantined_records: i64,
}

/// What `status` reads from.
#[allow(missing_debug_implementations)] // a connection is not `Debug`
pub struct Sources<'a> {
    pub queue: &'a SqsQueue,
    pub conn: &'a mut pipeline_store::Client,
    pub pending_migrations: Vec<String>,
}

impl Status {
    /// Gathers the report.
    pub async fn gather(&self, sources: Sources<'_>) -> anyhow::Result<Report> {
        let Sources {
            queue,
            conn,
            pending_migrations,
        } = sources;
        let at = OffsetDateTime::now_utc();
        let queue_state = QueueState::new(queue.url(), queue.depth().await?);
        let dead_letter_queue = match queue.dead_letter_url() {
            Some(url) => {
                let dlq = SqsQueue::new(queue.client().clone(), url.clone(), None);
                Some(QueueState::new(url, dlq.depth().await?))
            }
            None => None,
        };
        let ledger = async {
            Ok::<_, anyhow::Error>(Ledger {
                applied_last_hour: inspect::activity_since(conn, at - time::Duration::HOUR).await?,
                applied_last_day: inspect::activity_since(conn, at - time::Duration::DAY).await?,
                last_applied_at: inspect::last_applied(conn).await?,
                quarantined_records: inspect::quarantined_count(conn).await?,
            })
        };
        let ledger = match ledger.await {
            Ok(ledger) => Some(ledger),
            // A database not migrated yet may not have the tables: the
            // pending migrations are the answer.
            Err(_) if !pending_migrations.is_empty() => None,
            Err(e) => return Err(e),
        };
        let mut report = Report {
            at,
            queue: queue_state,
            dead_letter_queue,
            ledger,
            pending_migrations,
            problems: Vec::new(),
        };
        report.problems = self.problems(&report);
        Ok(report)
    }

    /// What needs a person.
    fn problems(&self, report: &Report) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(dlq) = &report.dead_letter_queue
            && dlq.total() > 0
        {
            problems.push(format!(
                "{} message(s) on the dead-letter queue {}: see `transformer redrive --dry-run`",
                dlq.total(),
                dlq.url
            ));
        }
        if !report.pending_migrations.is_empty() {
            problems.push(format!(
                "{} pending migration(s): run `transformer migrate`",
                report.pending_migrations.len()
            ));
        }
        if let (Some(max_idle), Some(ledger)) = (self.max_idle, &report.ledger) {
            let idle = ledger
                .last_applied_at
                .map(|last| (report.at - last).unsigned_abs());
            match idle {
                Some(idle) if idle <= max_idle => {}
                Some(idle) => problems.push(format!(
                    "nothing applied for {} (more than --max-idle {})",
                    humantime::format_duration(round(idle)),
                    humantime::format_duration(max_idle)
                )),
                None => problems.push("nothing was ever applied".into()),
            }
        }
        problems
    }
}

impl Report {
    /// The screen.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let queue = |q: &QueueState| {
            format!(
                "{:>6} visible {:>6} in flight {:>6} delayed   {}",
                q.visible, q.in_flight, q.delayed, q.url
            )
        };
        let activity = |a: &Activity| {
            format!(
                "{} object(s), {} record(s), {} row(s) written, {} quarantined",
                a.objects, a.records, a.rows_written, a.quarantined
            )
        };
        let _ = writeln!(out, "queue              {}", queue(&self.queue));
        let _ = match &self.dead_letter_queue {
            Some(dlq) => writeln!(out, "dead-letter queue  {}", queue(dlq)),
            None => writeln!(out, "dead-letter queue  none"),
        };
        match &self.ledger {
            Some(ledger) => {
                let _ = writeln!(
                    out,
                    "applied, last hour {}",
                    activity(&ledger.applied_last_hour)
                );
                let _ = writeln!(
                    out,
                    "applied, last day  {}",
                    activity(&ledger.applied_last_day)
                );
                let _ = match ledger.last_applied_at {
                    Some(last) => writeln!(
                        out,
                        "last applied       {} ({} ago)",
                        last.format(&Rfc3339).unwrap_or_default(),
                        humantime::format_duration(round((self.at - last).unsigned_abs()))
                    ),
                    None => writeln!(out, "last applied       never"),
                };
                let _ = writeln!(
                    out,
                    "quarantined        {} record(s): `transformer quarantine`",
                    ledger.quarantined_records
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "applied            unknown: the ledger is not migrated"
                );
            }
        }
        let _ = if self.pending_migrations.is_empty() {
            writeln!(out, "migrations         up to date")
        } else {
            writeln!(
                out,
                "migrations         {} pending: {}",
                self.pending_migrations.len(),
                self.pending_migrations.join(", ")
            )
        };
        let _ = if self.problems.is_empty() {
            writeln!(out, "check              ok")
        } else {
            writeln!(out, "check              {}", self.problems.join("; "))
        };
        out
    }
}

/// To the second: nobody needs the nanoseconds of an age.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(dlq_visible: u64, last: Option<OffsetDateTime>) -> Report {
        let at = OffsetDateTime::now_utc();
        let state = |visible| QueueState {
            url: "http://127.0.0.1:4566/000000000000/q".into(),
            visible,
            in_flight: 0,
            delayed: 0,
        };
        Report {
            at,
            queue: state(0),
            dead_letter_queue: Some(state(dlq_visible)),
            ledger: Some(Ledger {
                applied_last_hour: Activity::default(),
                applied_last_day: Activity::default(),
                last_applied_at: last,
                quarantined_records: 0,
            }),
            pending_migrations: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn status(max_idle: Option<Duration>) -> Status {
        Status {
            json: false,
            check: true,
            max_idle,
        }
    }

    #[test]
    fn dead_letters_and_idleness_are_problems() {
        let now = OffsetDateTime::now_utc();
        assert!(status(None).problems(&report(0, None)).is_empty());
        let dlq = status(None).problems(&report(2, Some(now)));
        assert_eq!(dlq.len(), 1);
        assert!(
            dlq[0].starts_with("2 message(s) on the dead-letter queue"),
            "{dlq:?}"
        );
        let hour = Some(Duration::from_secs(3600));
        assert!(status(hour).problems(&report(0, Some(now))).is_empty());
        let idle = status(hour).problems(&report(0, Some(now - time::Duration::hours(2))));
        assert!(idle[0].starts_with("nothing applied for 2h"), "{idle:?}");
        assert_eq!(
            status(hour).problems(&report(0, None)),
            ["nothing was ever applied"]
        );
    }

    #[test]
    fn the_screen_says_what_is_wrong() {
        let mut r = report(1, None);
        r.problems = status(None).problems(&r);
        let screen = r.render();
        assert!(screen.contains("last applied       never"), "{screen}");
        assert!(
            screen.contains("check              1 message(s) on the dead-letter queue"),
            "{screen}"
        );
    }
}
