//! The one connection type of the services, [`Client`], and the pool of
//! them that applies objects: tokio-postgres clients in a deadpool.
//!
//! New rows go in with binary `COPY`, PostgreSQL's fastest way in, on the
//! same connection and in the same transaction as the ledger row. diesel
//! has `COPY` only for its synchronous, libpq-based connection, and
//! diesel-async neither sends it nor hands out the tokio-postgres client it
//! wraps (weiznich/diesel_async#158; draft PR #278). So the run-time SQL is
//! written by hand ([`crate::rows`], [`crate::ledger`], [`crate::inspect`],
//! [`crate::tables`]), checked by the tests against the schema diesel keeps
//! in `migrations/`.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row, Statement, Transaction};

use crate::rows::KeysMet;
use crate::{DatabaseUrl, QueryError, StoreError, open, retrying_a_new_password};

/// A connection taken from the [`Store`]; back to the pool when dropped.
pub type Connection = managed::Object<Clients>;

/// The pipeline's database: a pool of connections, and its URL (without
/// the password) for error text. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: managed::Pool<Clients>,
    url: DatabaseUrl,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// A pool of at most `max_size` connections. Connects lazily.
    pub fn new(url: &DatabaseUrl, max_size: usize) -> Self {
        let pool = managed::Pool::builder(Clients { url: url.clone() })
            .max_size(max_size)
            .build()
            // Only fails when timeouts are set without a runtime; none are.
            .unwrap_or_else(|e| unreachable!("building a connection pool: {e}"));
        Self {
            pool,
            url: url.clone(),
        }
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Takes a connection from the pool, naming the database when that fails.
    pub async fn connection(&self) -> Result<Connection, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => e,
            e => StoreError::Pool {
                target: self.url.to_string(),
                reason: e.to_string(),
            },
        })
    }
}

/// Opens and checks the pool's clients.
#[derive(Debug)]
pub struct Clients {
    url: DatabaseUrl,
}

/// A connection that was handed out this recently is not pinged again: it
/// was working a moment ago, and a ping per object would be two of the
/// dozen round trips it costs.
const FRESH: Duration = Duration::from_secs(1);

impl managed::Manager for Clients {
    type Type = Client;
    type Error = StoreError;

    async fn create(&self) -> Result<Client, StoreError> {
        let client = retrying_a_new_password(&self.url, || open(&self.url)).await?;
        Ok(Client::new(client))
    }

    /// A closed connection is dropped. One idle for a while gets a round
    /// trip before reuse, as diesel-async's pool does: a server that
    /// restarted meanwhile is found here, not in the middle of an object.
    /// One that restarts within [`FRESH`] fails the next object's work,
    /// which is retried.
    async fn recycle(&self, client: &mut Client, metrics: &Metrics) -> RecycleResult<StoreError> {
        if client.client.is_closed() {
            return Err(RecycleError::message("closed"));
        }
        if metrics.last_used() < FRESH {
            return Ok(());
        }
        client
            .client
            .batch_execute("SELECT 1")
            .await
            .map_err(|e| RecycleError::Backend(QueryError::from(e).into()))
    }
}

/// A connection of the pool: its client, the statements prepared on it,
/// and what its last writes found.
#[derive(Debug)]
pub struct Client {
    client: tokio_postgres::Client,
    statements: Statements,
    keys_met: KeysMet,
}

impl Client {
    pub(crate) fn new(client: tokio_postgres::Client) -> Self {
        Self {
            client,
            statements: Statements::default(),
            keys_met: KeysMet::default(),
        }
    }

    /// The tokio-postgres client, for diesel's migration harness.
    pub(crate) fn into_inner(self) -> tokio_postgres::Client {
        self.client
    }

    /// Runs a read, prepared once per connection.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, QueryError> {
        let statement = self.statements.prepared(&self.client, sql).await?;
        Ok(self.client.query(&statement, params).await?)
    }

    /// Runs a read of exactly one row.
    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, QueryError> {
        let statement = self.statements.prepared(&self.client, sql).await?;
        Ok(self.client.query_one(&statement, params).await?)
    }

    /// Begins a transaction.
    pub async fn begin(&mut self) -> Result<Tx<'_>, QueryError> {
        Ok(Tx {
            inner: self.client.transaction().await?,
            statements: &mut self.statements,
            keys_met: &mut self.keys_met,
        })
    }

    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, QueryError> {
        let statement = self.statements.prepared(&self.client, sql).await?;
        Ok(self.client.query_opt(&statement, params).await?)
    }

    /// The session's backend process id, as `pg_backend_pid()` says.
    pub async fn backend_pid(&mut self) -> Result<i32, QueryError> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0))
    }
}

/// A transaction on a [`Client`]; rolled back if dropped uncommitted.
/// Its statements are prepared once per connection.
pub struct Tx<'c> {
    pub(crate) inner: Transaction<'c>,
    pub(crate) statements: &'c mut Statements,
    pub(crate) keys_met: &'c mut KeysMet,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("statements", &self.statements.0.len())
            .finish_non_exhaustive()
    }
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), QueryError> {
        Ok(self.inner.commit().await?)
    }

    pub async fn rollback(self) -> Result<(), QueryError> {
        Ok(self.inner.rollback().await?)
    }

    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statements.prepared(&self.inner, sql).await?;
        self.inner.execute(&statement, params).await
    }

    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statements.prepared(&self.inner, sql).await?;
        self.inner.query(&statement, params).await
    }

    pub(crate) async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let statement = self.statements.prepared(&self.inner, sql).await?;
        self.inner.query_one(&statement, params).await
    }
}

/// The statements prepared on one connection, by their SQL. The apply path
/// runs the same dozen statements for every object: prepared once, each
/// later run is one round trip instead of two, and PostgreSQL parses and
/// plans it no more.
#[derive(Debug, Default)]
pub(crate) struct Statements(HashMap<String, Statement>);

impl Statements {
    pub(crate) async fn prepared(
        &mut self,
        client: &impl GenericClient,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql).await?;
        self.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}
