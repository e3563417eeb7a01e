//! The connections that apply objects: tokio-postgres clients in a
//! deadpool, not diesel-async connections.
//!
//! New rows go in with binary `COPY`, PostgreSQL's fastest way in, on the
//! same connection and in the same transaction as the ledger row. diesel
//! has `COPY` only for its synchronous, libpq-based connection, and
//! diesel-async neither sends it nor hands out the tokio-postgres client it
//! wraps (weiznich/diesel_async#158; draft PR #278). So this path writes
//! its SQL by hand ([`crate::rows`], [`crate::ledger`]), checked by the
//! tests against the schema diesel keeps in `migrations/`; everything else
//! (migrations, the operator commands) stays on diesel.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use diesel::result::DatabaseErrorKind;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls, Row, Statement, Transaction};

use crate::rows::KeysMet;
use crate::{DatabaseUrl, StoreError, connect_failed, retrying_a_new_password};

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
        Ok(Client {
            client,
            statements: Statements::default(),
            keys_met: KeysMet::default(),
        })
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
            .map_err(|e| RecycleError::Backend(StoreError::Query(query_error(e))))
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
    /// Begins a transaction.
    pub async fn begin(&mut self) -> Result<Tx<'_>, tokio_postgres::Error> {
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
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statements.prepared(&self.client, sql).await?;
        self.client.query_opt(&statement, params).await
    }

    /// The session's backend process id, as `pg_backend_pid()` says.
    pub async fn backend_pid(&mut self) -> Result<i32, tokio_postgres::Error> {
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
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.inner.rollback().await
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

    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statements.prepared(&self.inner, sql).await?;
        self.inner.query_opt(&statement, params).await
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

/// One connection attempt with the password as it is now. The connection
/// task ends when the client is dropped or the server goes; the client's
/// calls then fail as closed, and the pool drops it.
async fn open(url: &DatabaseUrl) -> Result<tokio_postgres::Client, StoreError> {
    let config = url.config_now();
    match url.tls() {
        None => {
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| connect_failed(url, &e))?;
            tokio::spawn(connection);
            Ok(client)
        }
        Some(tls) => {
            let (client, connection) = config
                .connect(tls.clone())
                .await
                .map_err(|e| connect_failed(url, &e))?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

/// A tokio-postgres error as diesel's, the way diesel-async converts them,
/// so that [`StoreError::is_permanent`] and everything above it judge both
/// kinds of connection alike.
#[expect(clippy::needless_pass_by_value, reason = "for `map_err(query_error)`")]
pub(crate) fn query_error(error: tokio_postgres::Error) -> diesel::result::Error {
    use DatabaseErrorKind as Kind;
    let Some(db) = error.as_db_error() else {
        let kind = if error.is_closed() {
            Kind::ClosedConnection
        } else {
            Kind::UnableToSendCommand
        };
        return diesel::result::Error::DatabaseError(kind, Box::new(error.to_string()));
    };
    let kind = match *db.code() {
        SqlState::UNIQUE_VIOLATION => Kind::UniqueViolation,
        SqlState::FOREIGN_KEY_VIOLATION => Kind::ForeignKeyViolation,
        SqlState::RESTRICT_VIOLATION => Kind::RestrictViolation,
        SqlState::EXCLUSION_VIOLATION => Kind::ExclusionViolation,
        SqlState::T_R_SERIALIZATION_FAILURE => Kind::SerializationFailure,
        SqlState::READ_ONLY_SQL_TRANSACTION => Kind::ReadOnlyTransaction,
        SqlState::NOT_NULL_VIOLATION => Kind::NotNullViolation,
        SqlState::CHECK_VIOLATION => Kind::CheckViolation,
        _ => Kind::Unknown,
    };
    diesel::result::Error::DatabaseError(kind, Box::new(ServerError(db.clone())))
}

/// What the server said, as diesel shows it.
struct ServerError(DbError);

impl diesel::result::DatabaseErrorInformation for ServerError {
    fn message(&self) -> &str {
        self.0.message()
    }

    fn details(&self) -> Option<&str> {
        self.0.detail()
    }

    fn hint(&self) -> Option<&str> {
        self.0.hint()
    }

    fn table_name(&self) -> Option<&str> {
        self.0.table()
    }

    fn column_name(&self) -> Option<&str> {
        self.0.column()
    }

    fn constraint_name(&self) -> Option<&str> {
        self.0.constraint()
    }

    fn statement_position(&self) -> Option<i32> {
        match self.0.position()? {
            ErrorPosition::Original(position) | ErrorPosition::Internal { position, .. } => {
                i32::try_from(*position).ok()
            }
        }
    }
}
