//! The importer's baseline in `scripts/bench`: download the same pages with
//! the same HTTP client settings and concurrency, and do nothing else.
//! Prints `download_seconds <s>` and `download_bytes <n>`.

#![allow(clippy::print_stdout)]

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use std::time::{Duration, Instant};
use url::Url;

/// Downloads pages 1..=PAGES of SOURCE_URL (`_page`, `_limit`) and discards them.
#[derive(Debug, Parser)]
struct Cli {
    #[arg(long)]
    source_url: Url,
    #[arg(long)]
    page_size: u32,
    #[arg(long)]
    pages: u32,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The importer's own client, with HTTP_TIMEOUT's default.
    let http = importer::fetch::http_client(Duration::from_secs(30))?;
    let started = Instant::now();
    let sizes: Vec<anyhow::Result<usize>> = futures::stream::iter(1..=cli.pages)
        .map(|page| {
            let mut url = cli.source_url.clone();
            url.query_pairs_mut()
                .append_pair("_page", &page.to_string())
                .append_pair("_limit", &cli.page_size.to_string());
            let http = http.clone();
            async move {
                let mut response = http.get(url.clone()).send().await?.error_for_status()?;
                let mut size = 0;
                while let Some(chunk) = response.chunk().await? {
                    size += chunk.len();
                }
                Ok(size)
            }
        })
        .buffer_unordered(cli.concurrency)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut bytes = 0;
    for size in sizes {
        bytes += size.context("a page failed")?;
    }
    println!("download_seconds {seconds:.4}");
    println!("download_bytes {bytes}");
    Ok(())
}
