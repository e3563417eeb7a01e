//! `DATABASE_URL`, e.g. `postgres://pipeline:secret@127.0.0.1:5432/pipeline`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::Host;

/// A PostgreSQL connection string, checked when the settings are read.
///
/// `Display` and `Debug` show `host:port/dbname as user` and never the
/// password, so this can go in logs and error messages as it is.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    config: tokio_postgres::Config,
    target: String,
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
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err("expected postgres://user:password@host:port/dbname".into());
        }
        // tokio-postgres' own parser: what it accepts here it will connect with.
        // Its error messages name the bad part, never the password.
        let mut config = tokio_postgres::Config::from_str(raw).map_err(|e| e.to_string())?;
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
        })
    }
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
    fn rejects_what_cannot_connect() {
        assert!("mysql://x@y/z".parse::<DatabaseUrl>().is_err());
        assert!(
            "postgres://u:p@host:notaport/db"
                .parse::<DatabaseUrl>()
                .is_err()
        );
    }
}
