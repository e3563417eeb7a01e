//! The migrations in the workspace's `migrations/`, embedded at build time,
//! then those of a directory the user names (`MIGRATIONS_DIR`): the tables
//! of their own resources, in diesel's layout, as `transformer schema`
//! writes them.
//!
//! Applying them is a separate step (`transformer migrate`, a one-off ECS
//! task) so that many transformers starting at once never race to migrate;
//! `transformer run` only checks that none is pending.

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{
    EmbeddedMigrations, FileBasedMigrations, MigrationHarness, embed_migrations,
};
use pipeline_core::location::LocalDir;
use std::path::PathBuf;
use std::time::Duration;

use crate::{DatabaseUrl, StoreError, connect_waiting};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies every pending migration, the embedded ones first, then those
/// of `dir`, and returns the versions applied. Waits up to `wait` for a
/// server that does not answer yet.
pub async fn run_pending(
    url: &DatabaseUrl,
    wait: Duration,
    dir: Option<&LocalDir>,
) -> Result<Vec<String>, StoreError> {
    let dir = dir.map(|d| (d.path().to_owned(), d.to_string()));
    with_harness(url, wait, move |harness| {
        let mut applied: Vec<String> = harness
            .run_pending_migrations(MIGRATIONS)?
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(dir) = dir {
            let theirs = harness.run_pending_migrations(from_dir(&dir)?)?;
            applied.extend(theirs.iter().map(ToString::to_string));
        }
        Ok(applied)
    })
    .await
}

/// Returns the versions of the migrations not yet applied, the embedded
/// ones and those of `dir`. Waits up to `wait` for a server that does not
/// answer yet.
pub async fn pending(
    url: &DatabaseUrl,
    wait: Duration,
    dir: Option<&LocalDir>,
) -> Result<Vec<String>, StoreError> {
    let dir = dir.map(|d| (d.path().to_owned(), d.to_string()));
    with_harness(url, wait, move |harness| {
        let versions = |pending: Vec<Box<dyn diesel::migration::Migration<Pg>>>| {
            pending
                .iter()
                .map(|m| m.name().version().to_string())
                .collect::<Vec<_>>()
        };
        let mut pending = versions(harness.pending_migrations(MIGRATIONS)?);
        if let Some(dir) = dir {
            pending.extend(versions(harness.pending_migrations(from_dir(&dir)?)?));
        }
        Ok(pending)
    })
    .await
}

/// The migrations of `dir`, which must hold at least one: a directory
/// named by mistake must not pass as one with nothing to apply.
/// `dir` is its path on this machine and the name it goes by.
fn from_dir((path, name): &(PathBuf, String)) -> MigrationResult<FileBasedMigrations> {
    let migrations =
        FileBasedMigrations::from_path(path).map_err(|e| format!("MIGRATIONS_DIR {name}: {e}"))?;
    let found = MigrationSource::<Pg>::migrations(&migrations)?;
    if found.is_empty() {
        return Err(format!(
            "MIGRATIONS_DIR {name} holds no migration (a directory per migration, with up.sql and down.sql)"
        )
        .into());
    }
    Ok(migrations)
}

type Harness = AsyncConnectionWrapper<AsyncPgConnection>;
type MigrationResult<T> = diesel::migration::Result<T>;

/// diesel_migrations is synchronous; run it on a blocking thread over a
/// connection opened as every other is ([`connect_waiting`]) and handed to
/// diesel-async, so that no libpq is needed.
async fn with_harness<T: Send + 'static>(
    url: &DatabaseUrl,
    wait: Duration,
    work: impl FnOnce(&mut Harness) -> MigrationResult<T> + Send + 'static,
) -> Result<T, StoreError> {
    let failed = |reason: String| StoreError::Migrations {
        target: url.to_string(),
        reason,
    };
    let client = connect_waiting(url, wait).await?.into_inner();
    let conn = AsyncPgConnection::try_from(client)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut harness = Harness::from(conn);
    tokio::task::spawn_blocking(move || work(&mut harness))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(failed)
}
