//! `DATABASE_URL`, e.g. `postgres://pipeline:secret@127.0.0.1:5432/pipeline`
//! or, to RDS, `postgres://pipeline@db.xxxx.rds.amazonaws.com/pipeline?sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem`
//! (see [`crate::tls`]).

use pipeline_core::startup::{Attempt, wait_for};
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{info, warn};

use crate::StoreError;
use crate::tls::{self, SslMode};

/// Where the password comes from when it changes while the service runs:
/// RDS rotates its managed secret every 7 days, and a password injected
/// into the environment at start goes stale with it.
pub trait PasswordSource: fmt::Debug + Send + Sync + 'static {
    /// What it reads from, for log lines (never the password itself).
    fn name(&self) -> String;
    /// Reads the password as it is now.
    fn read(&self) -> Pin<Box<dyn Future<Output = Result<String, PasswordError>> + Send + '_>>;
}

/// The password could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the database password from {from}: {reason}")]
pub struct PasswordError {
    pub from: String,
    pub reason: String,
    /// The store did not answer (yet): another try may succeed.
    pub may_pass: bool,
}

/// A refused password is read again at most this often, however many
/// connections are refused meanwhile: a rotation refuses them all at once.
const MIN_REREAD: Duration = Duration::from_secs(5);

/// The password of a [`PasswordSource`], shared by every clone of the URL
/// (the pool's connections among them).
#[derive(Debug)]
struct Rotating {
    source: Arc<dyn PasswordSource>,
    current: RwLock<Option<String>>,
    /// Held while reading, so that one read serves every refused
    /// connection; and when the last read was.
    last_read: tokio::sync::Mutex<Option<Instant>>,
}

/// A PostgreSQL connection string, checked when the settings are read.
///
/// `Display` and `Debug` show `host:port/dbname as user` and never the
/// password, so this can go in logs and error messages as it is.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    config: tokio_postgres::Config,
    target: String,
    ssl_mode: SslMode,
    /// `None` with `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
    /// Set when the password comes from a source that may change it.
    rotating: Option<Arc<Rotating>>,
}

/// Used when the URL sets no `connect_timeout`: without one, a host that
/// drops packets keeps a connection attempt hanging for minutes.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DatabaseUrl {
    /// The full string, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The parsed connection settings, for connecting.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector for `sslmode`; `None` when it is `disable`.
    pub fn tls(&self) -> Option<&MakeRustlsConnect> {
        self.tls.as_ref()
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The same URL with another password, e.g. one a secret store
    /// injects apart from the URL (`DATABASE_PASSWORD` on ECS).
    #[must_use]
    pub fn with_password(mut self, password: &str) -> Self {
        self.config.password(password);
        self
    }

    /// The same URL with its password read from `source`, now
    /// ([`Self::load_password`]) and again whenever PostgreSQL refuses it.
    #[must_use]
    pub fn with_password_source(mut self, source: Arc<dyn PasswordSource>) -> Self {
        self.rotating = Some(Arc::new(Rotating {
            source,
            current: RwLock::new(None),
            last_read: tokio::sync::Mutex::new(None),
        }));
        self
    }

    /// Reads the password from its source, waiting up to `wait` for a
    /// store that does not answer yet. Without a source, does nothing.
    pub async fn load_password(&self, wait: Duration) -> Result<(), StoreError> {
        let Some(rotating) = &self.rotating else {
            return Ok(());
        };
        let password = wait_for(rotating.source.name(), wait, || async {
            rotating.source.read().await.map_err(|e| {
                if e.may_pass {
                    Attempt::NotReady(e)
                } else {
                    Attempt::Failed(e)
                }
            })
        })
        .await?;
        *rotating.current.write().unwrap_or_else(|e| e.into_inner()) = Some(password);
        Ok(())
    }

    /// The connection settings with the password as it is now.
    pub(crate) fn config_now(&self) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        if let Some(password) = self.rotating.as_ref().and_then(|r| r.password()) {
            config.password(password);
        }
        config
    }

    /// After PostgreSQL refused the password: reads it again from its
    /// source. True when there is a new one to try.
    pub(crate) async fn reread_password(&self) -> bool {
        let Some(rotating) = &self.rotating else {
            return false;
        };
        let refused = rotating.password();
        let mut last_read = rotating.last_read.lock().await;
        if rotating.password() != refused {
            // Another connection read a new one while this one waited.
            return true;
        }
        if last_read.is_some_and(|at| at.elapsed() < MIN_REREAD) {
            return false;
        }
        *last_read = Some(Instant::now());
        let from = rotating.source.name();
        warn!("PostgreSQL at {self} refused the password: reading it again from {from}");
        match rotating.source.read().await {
            Ok(password) if Some(&password) != refused.as_ref() => {
                *rotating.current.write().unwrap_or_else(|e| e.into_inner()) = Some(password);
                info!("The password in {from} has changed: connecting to {self} with the new one");
                true
            }
            Ok(_) => {
                warn!("{from} still holds the password that PostgreSQL at {self} refused");
                false
            }
            Err(e) => {
                warn!("{e}");
                false
            }
        }
    }
}

impl Rotating {
    fn password(&self) -> Option<String> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err("expected postgres://user:password@host:port/dbname".into());
        }
        // sslmode and sslrootcert are ours (tokio-postgres knows neither
        // verify-full nor sslrootcert); the rest goes to tokio-postgres' own
        // parser: what it accepts here it will connect with. Its error
        // messages name the bad part, never the password.
        let (rest, ssl_mode, root_cert) = split_tls_options(raw)?;
        let tls = tls::connector(ssl_mode, root_cert.as_deref())?;
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| e.to_string())?;
        config.ssl_mode(ssl_mode.negotiation());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => return Err("the URL names no host".into()),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dbname = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        let user = config.get_user().unwrap_or("(default user)");
        let target = format!("{host}:{port}/{dbname} as {user}");
        Ok(Self {
            raw: raw.to_owned(),
            config,
            target,
            ssl_mode,
            tls,
            rotating: None,
        })
    }
}

/// Takes `sslmode` (default `prefer`, as libpq) and `sslrootcert` out of
/// the URL's query string.
fn split_tls_options(raw: &str) -> Result<(String, SslMode, Option<PathBuf>), String> {
    let Some((base, query)) = raw.split_once('?') else {
        return Ok((raw.to_owned(), SslMode::Prefer, None));
    };
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "sslmode" => mode = value.parse()?,
            "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let rest = rest.finish();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{rest}")
    };
    Ok((url, mode, root_cert))
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_without_the_password() {
        let url: DatabaseUrl = "postgres://pipeline:hunter2@db.local:6543/posts"
            .parse()
            .expect("valid");
        assert_eq!(url.to_string(), "db.local:6543/posts as pipeline");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.expose().contains("hunter2"));
    }

    #[test]
    fn takes_sslmode_and_sslrootcert_like_libpq() {
        let url: DatabaseUrl = "postgres://u@h/db?connect_timeout=3&sslmode=require"
            .parse()
            .expect("valid");
        assert_eq!(url.ssl_mode(), SslMode::Require);
        assert!(url.tls().is_some());
        assert_eq!(
            url.config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );

        let plain: DatabaseUrl = "postgres://u@h/db?sslmode=disable".parse().expect("valid");
        assert!(plain.tls().is_none());
        let default: DatabaseUrl = "postgres://u@h/db".parse().expect("valid");
        assert_eq!(default.ssl_mode(), SslMode::Prefer);

        let err = |raw: &str| raw.parse::<DatabaseUrl>().expect_err(raw);
        assert!(err("postgres://u@h/db?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(err("postgres://u@h/db?sslmode=allow").contains("sslmode=allow is not one of"));
        assert!(
            err("postgres://u@h/db?sslmode=verify-full&sslrootcert=/no/such.pem")
                .contains("sslrootcert /no/such.pem")
        );
    }

    #[test]
    fn a_password_from_elsewhere_replaces_the_urls() {
        let url: DatabaseUrl = "postgres://pipeline@h/db".parse().expect("valid");
        let url = url.with_password("from-the-secret");
        assert_eq!(url.config().get_password(), Some(&b"from-the-secret"[..]));
        assert!(!format!("{url} {url:?}").contains("from-the-secret"));
    }

    #[test]
    fn rejects_what_cannot_connect() {
        assert!("mysql://x@y/z".parse::<DatabaseUrl>().is_err());
        assert!(
            "postgres://u:p@host:notaport/db"
                .parse::<DatabaseUrl>()
                .is_err()
        );
    }
}
