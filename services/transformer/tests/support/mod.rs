//! What the transformer's binary tests share: objects and messages made by
//! the real importer, as in production.

#![allow(clippy::expect_used)]
// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use importer::ImportReport;
use std::num::NonZeroU32;
use testkit::{TestAws, TestDb, command};
use url::Url;

/// The `transformer` binary, pointed at the test's queue and database.
pub fn transformer(aws: &TestAws, db: &TestDb) -> tokio::process::Command {
    let mut command = command(env!("CARGO_BIN_EXE_transformer"));
    command
        .envs(aws.env())
        .env("DATABASE_URL", db.url().expose());
    command
}

/// Imports `source` into the test's bucket and queue: one message, or one
/// per page of `page_size` records.
pub async fn import(aws: &TestAws, source: Url, page_size: Option<u32>) -> ImportReport {
    import_resource(aws, "posts", source, page_size).await
}

/// Imports `source` as `resource` once, in pages of `page_size` if given.
pub async fn import_resource(
    aws: &TestAws,
    resource: &str,
    source: Url,
    page_size: Option<u32>,
) -> ImportReport {
    let mut config =
        importer::settings::Config::new(source, aws.bucket.clone(), aws.queue_url.clone())
            .for_resource(resource);
    config.page_size = page_size.and_then(NonZeroU32::new);
    importer::Importer::new(config, aws.clients.clone())
        .expect("an importer")
        .import_once()
        .await
        .expect("the import")
}
