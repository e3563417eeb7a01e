//! The operator's commands. Each runs once and exits, in the same image and
//! with the same settings as `run`:
//!
//! - [`redrive`](mod@redrive): the dead-letter queue's messages back to the queue.
//! - [`quarantine`](mod@quarantine): the records that were not valid posts, listed or
//!   exported for `importer load`.
//! - [`status`](mod@status): the queues, what was applied, the quarantine and the
//!   migrations on one screen; `--check` for a probe.
//! - [`schema`]: the migration that makes each resource's table match the
//!   resources file, for a person to review.

pub mod quarantine;
pub mod redrive;
pub mod status;

use anyhow::Context as _;
use pipeline_core::aws::{AwsClients, check_queue};
use pipeline_core::exit::BadInput;
use pipeline_core::location::LocalDir;
use pipeline_core::settings::AwsSettings;
use pipeline_core::spec::Spec;
use pipeline_store::generate::{Migration, migration};
use pipeline_store::{DatabaseUrl, connect_waiting, migrations, tables};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::queue::SqsQueue;
use crate::secret::with_secret;
use crate::settings::{Schema, Settings};

/// The queue of QUEUE_URL and its dead-letter queue (DEAD_LETTER_QUEUE_URL,
/// else its redrive policy's), once the queue answered.
async fn queues(
    settings: &Settings,
    queue_url: Url,
    aws: &AwsClients,
    wait: Duration,
) -> anyhow::Result<SqsQueue> {
    check_queue(aws, &queue_url, wait).await?;
    let mut queue = SqsQueue::new(
        aws.sqs.clone(),
        queue_url,
        settings.dead_letter_queue_url.clone(),
    );
    if queue.dead_letter_url().is_none() {
        queue.discover_dead_letter_queue().await?;
    }
    Ok(queue)
}

/// DATABASE_URL, with its password read from DATABASE_SECRET when that is
/// set (as `run` reads it).
pub async fn with_database_secret(
    url: DatabaseUrl,
    settings: &Settings,
    aws: &AwsSettings,
) -> anyhow::Result<DatabaseUrl> {
    Ok(match &settings.database_secret {
        Some(secret_id) => with_secret(url, &AwsClients::new(aws).await?, secret_id),
        None => url,
    })
}

/// `transformer redrive`.
pub async fn redrive(
    args: &redrive::Redrive,
    settings: &Settings,
    queue_url: Url,
    aws: &AwsClients,
    wait: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let queue = queues(settings, queue_url, aws, wait).await?;
    let Some(dlq) = queue.dead_letter_url() else {
        return Err(BadInput(format!(
            "{} has no dead-letter queue: set DEAD_LETTER_QUEUE_URL or give the queue a redrive policy",
            queue.url()
        ))
        .into());
    };
    let visibility = settings.visibility_timeout;
    let mut out = std::io::stdout();
    args.run(&aws.sqs, queue.url(), dlq, visibility, &mut out, stop)
        .await
        .map(drop)
}

/// `transformer quarantine`.
pub async fn quarantine(
    args: &quarantine::Quarantine,
    url: &DatabaseUrl,
    wait: Duration,
) -> anyhow::Result<()> {
    url.load_password(wait).await?;
    let mut conn = connect_waiting(url, wait).await?;
    let mut out = std::io::stdout();
    let count = args.run(&mut conn, &mut out).await?;
    out.flush().context("cannot write to stdout")?;
    tracing::info!(records = count, "{count} quarantined record(s) in {url}");
    Ok(())
}

/// `transformer status`.
pub async fn status(
    args: &status::Status,
    settings: &Settings,
    queue_url: Url,
    url: &DatabaseUrl,
    aws: &AwsClients,
    migrations_dir: Option<&LocalDir>,
    wait: Duration,
) -> anyhow::Result<()> {
    url.load_password(wait).await?;
    let pending_migrations = migrations::pending(url, wait, migrations_dir).await?;
    let mut conn = connect_waiting(url, wait).await?;
    let queue = queues(settings, queue_url, aws, wait).await?;
    let sources = status::Sources {
        queue: &queue,
        conn: &mut conn,
        pending_migrations,
    };
    let report = args.gather(sources).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.render())?;
    }
    out.flush().context("cannot write to stdout")?;
    if args.check && !report.problems.is_empty() {
        anyhow::bail!("status check failed: {}", report.problems.join("; "));
    }
    Ok(())
}

/// `transformer schema`: compares each resource of `resources` with its
/// table as the database has it now, and prints (or writes, with `--write`)
/// the migration that makes them match; nothing when they do.
pub async fn schema(
    args: &Schema,
    resources: &Spec,
    url: &DatabaseUrl,
    wait: Duration,
) -> anyhow::Result<()> {
    url.load_password(wait).await?;
    let mut conn = connect_waiting(url, wait).await?;
    let mut all = Migration::default();
    for resource in &resources.resources {
        let live = tables::live_table(&mut conn, &resource.table)
            .await
            .with_context(|| format!("cannot read table `{}` in {url}", resource.table))?;
        let one = migration(resource, live.as_ref());
        all.up.push_str(&one.up);
        all.down = format!("{}{}", one.down, all.down);
    }
    if all.is_empty() {
        tracing::info!("Every table of {} matches it in {url}", resources.source);
        return Ok(());
    }
    let header = format!(
        "-- Made by `transformer schema` from {} and {url}: review it before you commit it.\n\n",
        resources.source
    );
    let Some(dir) = &args.write else {
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "-- up.sql\n{header}{}\n-- down.sql\n{}",
            all.up, all.down
        )?;
        out.flush().context("cannot write to stdout")?;
        return Ok(());
    };
    let stamp = next_version(dir, time::OffsetDateTime::now_utc())?;
    let path = dir.join(format!("{stamp}_{}", args.name));
    let written = std::fs::create_dir_all(&path)
        .and_then(|()| std::fs::write(path.join("up.sql"), format!("{header}{}", all.up)))
        .and_then(|()| std::fs::write(path.join("down.sql"), format!("{header}{}", all.down)));
    written.map_err(|e| BadInput(format!("cannot write {}: {e}", path.display())))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", path.display())?;
    out.flush().context("cannot write to stdout")?;
    tracing::info!(
        "Wrote {}: review it, then apply it with `transformer migrate` (MIGRATIONS_DIR={})",
        path.display(),
        dir.display()
    );
    Ok(())
}

/// The `YYYY-MM-DD-HHMMSS` a new migration of `dir` is named with: now, or
/// a second after the newest one there if that is not earlier. diesel
/// knows a migration by these digits alone, so two written within the
/// same second would be one migration to it, and the second never applied.
fn next_version(dir: &Path, now: time::OffsetDateTime) -> anyhow::Result<String> {
    const LAYOUT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]-[hour][minute][second]");
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stamp = name.get(..17)?;
            time::PrimitiveDateTime::parse(stamp, LAYOUT).ok()
        })
        .max();
    let now = time::PrimitiveDateTime::new(now.date(), now.time().truncate_to_second());
    let at = match newest {
        Some(newest) if newest >= now => newest + time::Duration::SECOND,
        _ => now,
    };
    at.format(LAYOUT).context("cannot format the time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_migration_written_within_the_second_of_another_comes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2026-12-07 13:59:22.5 UTC);
        assert_eq!(next_version(dir.path(), now).unwrap(), "2026-12-07-135922");
        std::fs::create_dir(dir.path().join("2026-12-07-135922_add_tickets")).unwrap();
        assert_eq!(next_version(dir.path(), now).unwrap(), "2026-12-07-135923");
        std::fs::create_dir(dir.path().join("2026-12-07-140000_later")).unwrap();
        assert_eq!(next_version(dir.path(), now).unwrap(), "2026-12-07-140001");
        std::fs::create_dir(dir.path().join("notes")).unwrap();
        let later = datetime!(2026-12-08 00:00:00 UTC);
        assert_eq!(
            next_version(dir.path(), later).unwrap(),
            "2026-12-08-000000"
        );
    }
}
