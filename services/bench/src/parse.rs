//! `bench-parse`: the CPU a record costs to read, by the resources file's
//! reader (`pipeline_core::spec`, what the services run) and by the best a
//! hand-written reader does on the same bodies: serde's derived
//! `Deserialize` for a Rust struct of a post, checked by hand with the same
//! rules, which is how the services read posts before the resources file.
//! The two take turns in each run. Prints one line per way: MB/s (median of
//! the runs) and the median of the runs' ratios to the hand-written one.
//! Also a resource with a `jsonb`, a `timestamptz` and a `numeric` column
//! beside posts, which only the spec reader can read.

// A measuring tool: its inputs are made here, and a failure is a bug to see at once.
#![allow(clippy::print_stdout, clippy::expect_used)]

use clap::Parser;
use fake_api::Post;
use pipeline_core::spec::Spec;
use pipeline_core::spec::body::{read_body, scan_body};
use std::hint::black_box;
use std::time::Instant;

#[derive(Debug, Parser)]
struct Cli {
    /// Posts per body (the importer's page).
    #[arg(long, default_value_t = 1_000)]
    posts: u32,
    /// Bodies per run.
    #[arg(long, default_value_t = 100)]
    bodies: u32,
    /// Runs; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

const EVENTS: &str = r#"
[resources.events]
key = "id"
[[resources.events.columns]]
name = "id"
type = "bigint"
[[resources.events.columns]]
name = "at"
type = "timestamptz"
[[resources.events.columns]]
name = "amount"
type = "numeric"
[[resources.events.columns]]
name = "payload"
type = "jsonb"
[[resources.events.columns]]
name = "title"
type = "text"
"#;

fn main() {
    let cli = Cli::parse();
    let bodies: Vec<Vec<u8>> = (0..cli.bodies)
        .map(|rev| fake_api::body(cli.posts, rev))
        .collect();
    let events: Vec<Vec<u8>> = (0..cli.bodies)
        .map(|rev| events_body(cli.posts, rev))
        .collect();
    let spec = Spec::built_in();
    let posts = spec.resource("posts").expect("posts are built in");
    let events_spec = Spec::parse("events", EVENTS).expect("a valid spec");
    let events_spec = &events_spec.resources[0];

    let mb = |bodies: &[Vec<u8>]| bodies.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    // MB/s of one pass of `read` over `bodies`.
    let rate = |bodies: &[Vec<u8>], read: &dyn Fn(&[u8]) -> usize| {
        let started = Instant::now();
        let mut records = 0;
        for body in bodies {
            records += read(black_box(body));
        }
        assert_eq!(
            records,
            bodies.len() * cli.posts as usize,
            "every record read"
        );
        mb(bodies) / started.elapsed().as_secs_f64()
    };
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    // The two ways take turns within each run, so that a noisy moment of
    // a shared machine weighs on both: the ratio is the median of the
    // runs' ratios, not a ratio of medians taken at different times.
    let compare = |name: &str, rust: &dyn Fn(&[u8]) -> usize, spec: &dyn Fn(&[u8]) -> usize| {
        let runs: Vec<(f64, f64)> = (0..cli.runs)
            .map(|_| (rate(&bodies, rust), rate(&bodies, spec)))
            .collect();
        let ratio = median(runs.iter().map(|(r, s)| s / r).collect());
        println!(
            "posts_{name}_rust_mb_per_s {:.1}",
            median(runs.iter().map(|r| r.0).collect())
        );
        println!(
            "posts_{name}_spec_mb_per_s {:.1} ratio {ratio:.2}",
            median(runs.iter().map(|r| r.1).collect())
        );
    };

    println!(
        "bodies {} of {} posts, {:.1} MB",
        cli.bodies,
        cli.posts,
        mb(&bodies)
    );
    compare("whole", &|b| by_hand(b).len(), &|b| {
        read_body(posts, b).expect("posts").columns.rows()
    });
    let streamed = median(
        (0..cli.runs)
            .map(|_| {
                rate(&bodies, &|b| {
                    let mut n = 0;
                    scan_body(posts, b, 5_000, &mut |batch| n += batch.columns.rows())
                        .expect("posts");
                    n
                })
            })
            .collect(),
    );
    println!("posts_streamed_spec_mb_per_s {streamed:.1}");
    let events_rate = median(
        (0..cli.runs)
            .map(|_| {
                rate(&events, &|b| {
                    read_body(events_spec, b).expect("events").columns.rows()
                })
            })
            .collect(),
    );
    println!(
        "events_whole_spec_mb_per_s {events_rate:.1} ({:.1} MB: timestamptz, numeric, jsonb, text)",
        mb(&events)
    );
}

/// Posts read the way a hand-written reader does at its best: the UTF-8
/// checked in one SIMD pass, the array straight into structs by serde's
/// derived code, then each post held to the built-in file's rules.
fn by_hand(body: &[u8]) -> Vec<Post> {
    let text = simdutf8::basic::from_utf8(body).expect("UTF-8");
    let posts: Vec<Post> = serde_json::from_str(text).expect("posts");
    for post in &posts {
        let text_ok = |t: &str, max: usize| t.len() <= max && !t.contains('\0');
        assert!(
            post.id >= 1
                && post.user_id >= 1
                && text_ok(&post.title, 4 * 1024)
                && text_ok(&post.body, 256 * 1024),
            "every post is valid"
        );
    }
    posts
}

/// Records with a time, a decimal, a nested object and a text, about the
/// size of a post.
fn events_body(count: u32, rev: u32) -> Vec<u8> {
    let records: Vec<String> = (1..=count)
        .map(|id| {
            format!(
                r#"{{"id":{id},"at":"2026-12-07T09:{:02}:{:02}.{:03}Z","amount":"{}.{:02}","payload":{{"tags":["a","b"],"rev":{rev},"nested":{{"k":"v","n":[1,2,3]}}}},"title":"{}"}}"#,
                id % 60,
                (id / 60) % 60,
                id % 1000,
                id * 7,
                id % 100,
                "lorem ipsum dolor sit amet ".repeat(30)
            )
        })
        .collect();
    format!("[{}]", records.join(",")).into_bytes()
}
