//! When a connection tries a chunk as all new, on the real PostgreSQL.
//!
//! A `COPY` that fails on a key already present leaves the rows it wrote
//! before the failure in the heap as dead tuples, so the heap position of
//! the next row inserted tells whether a write tried the `COPY` first or
//! looked its keys up.

#![allow(clippy::unwrap_used)]

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer};
use diesel_async::RunQueryDsl;
use e2e::{post_rows, posts_resource};
use pipeline_store::Store;
use pipeline_store::rows::{Lineage, UpsertCounts, upsert};
use std::collections::HashMap;
use testkit::TestDb;
use testkit::fake_api::Post;
use time::OffsetDateTime;

fn posts(ids: &[i64]) -> pipeline_core::spec::read::Columns {
    let posts: Vec<Post> = ids
        .iter()
        .map(|&id| Post {
            user_id: 1,
            id,
            title: "t".to_owned(),
            body: "b".to_owned(),
        })
        .collect();
    post_rows(&posts)
}

/// Writes `ids` in a transaction of their own, on the store's one connection.
async fn write(store: &Store, ids: &[i64], fetched_at: OffsetDateTime) -> UpsertCounts {
    let mut conn = store.connection().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let counts = upsert(
        &mut tx,
        posts_resource(),
        &posts(ids),
        Lineage {
            source_object: "s3://raw/posts.json",
            fetched_at,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    counts
}

#[derive(QueryableByName)]
struct Slot {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    slot: i32,
}

/// Each post's line pointer in the heap: 1 for the first tuple written to
/// the empty table, and so on, dead ones included (all fit in page 0).
async fn slots(db: &TestDb) -> HashMap<i64, i32> {
    let slots: Vec<Slot> = diesel::sql_query(
        "SELECT id, (ctid::text::point)[1]::int AS slot FROM posts WHERE (ctid::text::point)[0] = 0",
    )
    .load(&mut db.connect().await)
    .await
    .unwrap();
    slots.into_iter().map(|s| (s.id, s.slot)).collect()
}

fn counts(inserted: u64, unchanged: u64) -> UpsertCounts {
    UpsertCounts {
        inserted,
        unchanged,
        ..UpsertCounts::default()
    }
}

#[tokio::test]
async fn a_connection_looks_keys_up_first_only_after_it_met_present_ones() {
    let db = TestDb::new().await;
    let store = Store::new(db.url(), 1);
    let fetched_at = OffsetDateTime::now_utc();

    assert_eq!(write(&store, &[1, 2, 3], fetched_at).await, counts(3, 0));
    // Tried as all new: the COPY fails on post 1 after writing tuples.
    assert_eq!(
        write(&store, &[1, 2, 3, 10], fetched_at).await,
        counts(1, 3)
    );
    // Looked up first, since the last chunk met present keys: no waste.
    assert_eq!(
        write(&store, &[1, 2, 3, 11], fetched_at).await,
        counts(1, 3)
    );
    // Still looked up first; the look-up finds no key present.
    assert_eq!(write(&store, &[12], fetched_at).await, counts(1, 0));
    // So this one is tried as all new again, and fails on post 1.
    assert_eq!(write(&store, &[1, 13], fetched_at).await, counts(1, 1));

    let slot = slots(&db).await;
    assert_eq!([slot[&1], slot[&2], slot[&3]], [1, 2, 3], "{slot:?}");
    assert!(slot[&10] > 4, "a failed COPY came before post 10: {slot:?}");
    assert_eq!(
        slot[&11],
        slot[&10] + 1,
        "no failed COPY before post 11: {slot:?}"
    );
    assert_eq!(
        slot[&12],
        slot[&11] + 1,
        "no failed COPY before post 12: {slot:?}"
    );
    assert!(
        slot[&13] > slot[&12] + 1,
        "a failed COPY came before post 13: {slot:?}"
    );
}
