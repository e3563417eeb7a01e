//! What the one run-time error type says of PostgreSQL's answers, on a
//! real server: an integrity violation cannot pass by trying again (the
//! message is dead-lettered at once); anything else may (it is retried,
//! and the redrive policy catches what keeps failing). Each in one line
//! with what the server said.

#![allow(clippy::unwrap_used)]

use pipeline_store::{QueryError, StoreError};
use testkit::TestDb;

async fn refused(db: &TestDb, sql: &str) -> QueryError {
    let mut conn = pipeline_store::connect(db.url()).await.unwrap();
    conn.query(
        "CREATE TEMP TABLE t (id int PRIMARY KEY, v text NOT NULL CHECK (v <> ''))",
        &[],
    )
    .await
    .unwrap();
    conn.query(sql, &[]).await.unwrap_err()
}

#[tokio::test]
async fn integrity_violations_are_permanent_and_the_rest_is_retried() {
    let db = TestDb::new().await;
    for (sql, permanent, text) in [
        (
            "INSERT INTO t VALUES (1, 'a'), (1, 'b')",
            true,
            r#"PostgreSQL query failed: duplicate key value violates unique constraint "t_pkey" (Key (id)=(1) already exists.)"#,
        ),
        (
            "INSERT INTO t VALUES (1, NULL)",
            true,
            r#"PostgreSQL query failed: null value in column "v" of relation "t" violates not-null constraint (Failing row contains (1, null).)"#,
        ),
        (
            "INSERT INTO t VALUES (1, '')",
            true,
            r#"PostgreSQL query failed: new row for relation "t" violates check constraint "t_v_check" (Failing row contains (1, ).)"#,
        ),
        (
            "SELECT * FROM no_such_table",
            false,
            r#"PostgreSQL query failed: relation "no_such_table" does not exist"#,
        ),
    ] {
        let error = refused(&db, sql).await;
        assert_eq!(error.to_string(), text, "{sql}");
        assert_eq!(error.is_permanent(), permanent, "{sql}");
        assert_eq!(StoreError::from(error).is_permanent(), permanent, "{sql}");
    }
}
