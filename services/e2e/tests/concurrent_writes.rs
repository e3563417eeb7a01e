//! Two transactions writing the same posts at once, on the real PostgreSQL:
//! the one whose `COPY` meets an id inserted under it falls back to the
//! upsert and neither fails.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::{post_rows, posts_resource};
use pipeline_store::rows::{Lineage, UpsertCounts, upsert};
use pipeline_store::schema::posts;
use std::time::Duration;
use testkit::TestDb;
use testkit::fake_api::Post;
use time::OffsetDateTime;

fn post(id: i64, title: &str) -> Post {
    Post {
        user_id: 1,
        id,
        title: title.to_owned(),
        body: "b".to_owned(),
    }
}

#[tokio::test]
async fn an_id_inserted_by_another_transaction_meanwhile_is_upserted_not_an_error() {
    let db = TestDb::new().await;
    let older = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let newer = OffsetDateTime::now_utc();
    let (a_wrote, b_may_start) = tokio::sync::oneshot::channel();
    let (b_is, b_pid) = tokio::sync::oneshot::channel::<i32>();

    // A inserts post 1 and keeps its transaction open until B is blocked
    // on post 1's key: B's COPY meets A's row. (B's connection has written
    // nothing yet, so B tries its posts as all new, without a look-up; one
    // that looked first, before A committed, would meet it the same way.)
    let store = pipeline_store::Store::new(db.url(), 2);
    let a = {
        let db_url = db.url().clone();
        let mut conn = store.connection().await.unwrap();
        tokio::spawn(async move {
            let mut tx = conn.begin().await.unwrap();
            let counts = upsert(
                &mut tx,
                posts_resource(),
                &post_rows(&[post(1, "from A")]),
                Lineage {
                    source_object: "s3://raw/a.json",
                    fetched_at: older,
                },
            )
            .await
            .unwrap();
            a_wrote.send(()).unwrap();
            let b_pid = b_pid.await.unwrap();
            let mut watcher = pipeline_store::connect(&db_url).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let waiting: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = $1",
                        &[&b_pid],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if waiting > 0 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "B (pid {b_pid}) never waited on A's row"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tx.commit().await.unwrap();
            counts
        })
    };
    b_may_start.await.unwrap();
    let mut conn = store.connection().await.unwrap();
    let pid = conn.backend_pid().await.unwrap();
    b_is.send(pid).unwrap();
    let mut tx = conn.begin().await.unwrap();
    let b = upsert(
        &mut tx,
        posts_resource(),
        &post_rows(&[post(1, "from B"), post(2, "from B")]),
        Lineage {
            source_object: "s3://raw/b.json",
            fetched_at: newer,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let a = a.await.unwrap();

    assert_eq!(a.inserted, 1);
    assert_eq!(
        b,
        UpsertCounts {
            inserted: 1,
            updated: 1,
            ..UpsertCounts::default()
        },
        "post 2 inserted; post 1, inserted by A meanwhile, updated"
    );
    let titles: Vec<(i64, String)> = posts::table
        .select((posts::id, posts::title))
        .order(posts::id)
        .load(&mut db.connect().await)
        .await
        .unwrap();
    assert_eq!(
        titles,
        [(1, "from B".to_owned()), (2, "from B".to_owned())],
        "B's version is newer"
    );
}
