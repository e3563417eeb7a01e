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
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::{Client, NoTls};

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

impl managed::Manager for Clients {
    type Type = Client;
    type Error = StoreError;

    async fn create(&self) -> Result<Client, StoreError> {
        retrying_a_new_password(&self.url, || open(&self.url)).await
    }

    /// A round trip before reuse, as diesel-async's pool does: a server
    /// that restarted since is found here, not in the middle of an object.
    async fn recycle(&self, client: &mut Client, _: &Metrics) -> RecycleResult<StoreError> {
        if client.is_closed() {
            return Err(RecycleError::message("closed"));
        }
        client
            .batch_execute("SELECT 1")
            .await
            .map_err(|e| RecycleError::Backend(StoreError::Query(query_error(e))))
    }
}

/// One connection attempt with the password as it is now. The connection
/// task ends when the client is dropped or the server goes; the client's
/// calls then fail as closed, and the pool drops it.
async fn open(url: &DatabaseUrl) -> Result<Client, StoreError> {
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
