use anyhow::Context as _;
use clap::Parser;
use fake_api::{FakeApi, Faults, base_url, router};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves a deterministic fake of JSONPlaceholder's /posts and /comments (see the crate docs
/// for the routes).
#[derive(Debug, Parser)]
#[command(name = "fake-api", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "FAKE_API_LISTEN",
        value_name = "FAKE_API_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Number of posts at /posts.
    #[arg(
        long,
        env = "FAKE_API_POSTS",
        value_name = "FAKE_API_POSTS",
        default_value_t = 100
    )]
    posts: u32,
    /// Number of comments at /comments.
    #[arg(
        long,
        env = "FAKE_API_COMMENTS",
        value_name = "FAKE_API_COMMENTS",
        default_value_t = 500
    )]
    comments: u32,
    /// Sentences added to every body: 14 make posts of about 1.1 kB.
    #[arg(long, default_value_t = 0)]
    extra_sentences: u32,
    /// Fraction of requests to /posts and /comments answered 503.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Fraction of requests to /posts and /comments answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Seconds in the Retry-After of a 429.
    #[arg(long, default_value_t = 1)]
    retry_after: u32,
    /// Fraction of requests to /posts and /comments answered with half the body.
    #[arg(long, default_value_t = 0.0)]
    truncate_rate: f64,
    /// Delay before every answer to /posts and /comments, e.g. 200ms.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// A page (_page) that always answers 500.
    #[arg(long)]
    fail_page: Option<u32>,
    /// Leave out X-Total-Count: clients must follow the Link header.
    #[arg(long)]
    hide_total: bool,
    /// The last page's Link rel="next" points back to page 1.
    #[arg(long)]
    link_back: bool,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("Failed to listen on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    // Scripts read this line to learn the port when --listen ends in :0.
    eprintln!("fake-api listening on {}", base_url(addr));
    let api = FakeApi {
        posts: cli.posts,
        comments: cli.comments,
        extra_sentences: cli.extra_sentences,
        faults: Faults {
            failure_rate: cli.failure_rate,
            throttle_rate: cli.throttle_rate,
            throttle_first: 0,
            retry_after_secs: cli.retry_after,
            truncate_rate: cli.truncate_rate,
            delay: cli.delay,
            fail_page: cli.fail_page,
            hide_total: cli.hide_total,
            link_back: cli.link_back,
            seed: cli.seed,
        },
        v3: fake_api::v3::Options::default(),
    };
    axum::serve(listener, router(api))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
