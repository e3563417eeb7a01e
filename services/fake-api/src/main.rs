use anyhow::Context as _;
use clap::Parser;
use fake_api::{FakeApi, base_url, router};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Serves a deterministic fake of JSONPlaceholder's /posts (see the crate docs for the routes).
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
    axum::serve(listener, router(FakeApi { posts: cli.posts }))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
