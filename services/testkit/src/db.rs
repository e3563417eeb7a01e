//! A PostgreSQL database of a test's own.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pipeline_store::DatabaseUrl;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::sync::OnceCell;
use url::Url;

use crate::{env_url, run_detached, unique_name};

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: DatabaseUrl,
}

impl TestDb {
    /// A new database with every migration applied.
    pub async fn new() -> Self {
        let template = template().await;
        Self::create(&format!("TEMPLATE {template}")).await
    }

    /// A new database with no migration applied.
    pub async fn empty() -> Self {
        Self::create("TEMPLATE template0").await
    }

    async fn create(options: &str) -> Self {
        crate::logs();
        let name = unique_name("test").replace('-', "_");
        let mut admin = admin().await;
        diesel::sql_query(format!("CREATE DATABASE {name} {options}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let url = db_url(&name)
            .as_str()
            .parse()
            .expect("a valid database URL");
        Self { name, url }
    }

    /// The URL of this database, as `DATABASE_URL` would give it.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The URL of this database through another port of 127.0.0.1 (a
    /// [`crate::proxy::Proxy`]'s, or one where nothing listens), password included.
    pub fn url_through(&self, port: u16) -> String {
        let mut url = Url::parse(self.url.expose()).expect("a valid database URL");
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(port)).expect("a port");
        url.to_string()
    }

    /// The number a query counts, as `SELECT count(*) AS n ...`.
    pub async fn count(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.connect().await;
        diesel::sql_query(query)
            .get_result::<Count>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .n
    }

    /// Runs SQL that returns nothing to read (DDL, an update).
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.connect().await;
        diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The rows of a query as JSON, `SELECT to_jsonb(t) AS j FROM ... t`:
    /// any table, whatever its columns' types, as PostgreSQL renders them.
    pub async fn json(&self, query: &str) -> Vec<serde_json::Value> {
        #[derive(diesel::QueryableByName)]
        struct Json {
            #[diesel(sql_type = diesel::sql_types::Text)]
            j: String,
        }
        let sql = format!("SELECT j::text AS j FROM ({query}) q");
        let mut conn = self.connect().await;
        diesel::sql_query(&sql)
            .load::<Json>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .map(|row| serde_json::from_str(&row.j).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    /// Every row of a resource's `table`, by key: its content as the API
    /// serves it (camelCase JSON) and its lineage, so that one test reads
    /// any resource's table.
    pub async fn rows(&self, table: &str) -> Vec<Row> {
        let query = format!(
            "SELECT id, (to_jsonb(t) - 'source_object' - 'fetched_at' - 'loaded_at')::text AS content,
                    source_object, fetched_at, loaded_at
             FROM {table} t ORDER BY id"
        );
        let mut conn = self.connect().await;
        diesel::sql_query(&query)
            .load::<RawRow>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .into_iter()
            .map(|raw| Row {
                id: raw.id,
                content: camel_case_keys(
                    serde_json::from_str(&raw.content).unwrap_or_else(|e| panic!("{e}")),
                ),
                source_object: raw.source_object,
                fetched_at: raw.fetched_at,
                loaded_at: raw.loaded_at,
            })
            .collect()
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(self.url.expose())
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(move || async move {
            let mut admin = admin().await;
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        });
    }
}

fn db_url(name: &str) -> Url {
    let mut url = env_url("TEST_DATABASE_URL");
    url.set_path(&format!("/{name}"));
    url
}

async fn admin() -> AsyncPgConnection {
    let url = env_url("TEST_DATABASE_URL");
    AsyncPgConnection::establish(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("connecting to TEST_DATABASE_URL: {e}"))
}

/// The advisory lock that serialises creating the template: any number
/// this cluster's other users do not take.
const TEMPLATE_LOCK: i64 = 7324;

/// The name of a database with every migration applied, created once per
/// set of migrations. An advisory lock keeps concurrent test processes from
/// creating it twice; nobody stays connected to it, so it can be cloned.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("pipeline_template_{}", &migrations_hash()[..16]);
            let mut admin = admin().await;
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(TEMPLATE_LOCK)
                .execute(&mut admin)
                .await
                .expect("lock");
            let exists: i64 = {
                use diesel::sql_types::{BigInt, Text};
                #[derive(diesel::QueryableByName)]
                struct Count {
                    #[diesel(sql_type = BigInt)]
                    n: i64,
                }
                diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
                    .bind::<Text, _>(&name)
                    .get_result::<Count>(&mut admin)
                    .await
                    .expect("query pg_database")
                    .n
            };
            if exists == 0 {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("drop a half-built template");
                diesel::sql_query(format!("CREATE DATABASE {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the template");
                let url: DatabaseUrl = db_url(&building).as_str().parse().expect("valid URL");
                pipeline_store::migrations::run_pending(&url, std::time::Duration::ZERO, None)
                    .await
                    .expect("migrate the template");
                // Renamed only once complete, so a crash never leaves a half-migrated template.
                diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("rename the template");
            }
            diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<diesel::sql_types::BigInt, _>(TEMPLATE_LOCK)
                .execute(&mut admin)
                .await
                .expect("unlock");
            name
        })
        .await
}

fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(
            file.strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&file).unwrap());
    }
    hex::encode(hasher.finalize())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A row of a resource's table, as [`TestDb::rows`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    /// Every column but the lineage, keyed as the API's JSON is
    /// (`user_id` is `userId`).
    pub content: serde_json::Value,
    pub source_object: String,
    pub fetched_at: time::OffsetDateTime,
    pub loaded_at: time::OffsetDateTime,
}

#[derive(diesel::QueryableByName)]
struct RawRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    content: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    source_object: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    fetched_at: time::OffsetDateTime,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    loaded_at: time::OffsetDateTime,
}

/// `{"user_id": 1}` as `{"userId": 1}`.
fn camel_case_keys(value: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(map) = value else {
        return value;
    };
    map.into_iter()
        .map(|(key, value)| {
            let mut camel = String::with_capacity(key.len());
            let mut upper = false;
            for c in key.chars() {
                match c {
                    '_' => upper = true,
                    c if upper => {
                        camel.extend(c.to_uppercase());
                        upper = false;
                    }
                    c => camel.push(c),
                }
            }
            (camel, value)
        })
        .collect()
}
