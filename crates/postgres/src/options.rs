//! Where the PostgreSQL server is and how to reach it, from a `postgres://` URL.

use std::path::PathBuf;
use std::str::FromStr;

use ironhub_store::{Result, StoreError};

/// How to reach the database: everything `tokio-postgres` reads from a URL (host or Unix
/// socket directory, port, user, password, database, `sslmode=disable|prefer|require`), and
/// the CA certificates (PEM) that verify the server when TLS is used: the `sslrootcert`
/// parameter of the URL, as libpq names it, or the system's roots without it.
#[derive(Clone)]
pub struct PgOptions {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PgOptions {
    /// Reads a `postgres://` (or `postgresql://`) URL. The error never repeats the URL, which
    /// may hold a password.
    pub fn parse(url: &str) -> Result<Self> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let mut ca_file = None;
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("sslrootcert", value)) => {
                    let path = percent_decode(value)?;
                    ca_file = Some(PathBuf::from(path));
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| StoreError::Engine(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_hosts().is_empty() {
            return Err(StoreError::Engine(
                "invalid PostgreSQL URL: it names no host (or `host=` socket directory)".into(),
            ));
        }
        let mut config = config;
        let unix_only = config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        if unix_only {
            // As libpq: no TLS over a Unix socket (a path is no server name to verify).
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok(Self { config, ca_file })
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    /// The database connected to (the user's name when the URL names none, as PostgreSQL does).
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname().or(self.config.get_user())
    }
}

/// Decodes `%XX` escapes (a CA file's path in a URL).
fn percent_decode(value: &str) -> Result<String> {
    let bad = || StoreError::Engine("invalid PostgreSQL URL: a bad %-escape in sslrootcert".into());
    // `percent-encoding` passes a malformed escape through: refuse it instead.
    let escapes_ok = value.match_indices('%').all(|(i, _)| {
        value
            .get(i + 1..i + 3)
            .is_some_and(|h| u8::from_str_radix(h, 16).is_ok())
    });
    if !escapes_ok {
        return Err(bad());
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_credentials_sslmode_and_the_ca_file() {
        let o = PgOptions::parse(
            "postgres://hub:s3cret@db.example:6543/ironhub?sslmode=require&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(o.config.get_user(), Some("hub"));
        assert_eq!(o.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(o.config.get_ports(), &[6543]);
        assert_eq!(o.database(), Some("ironhub"));
        assert_eq!(
            o.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(o.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!format!("{o:?}").contains("s3cret"));
    }

    #[test]
    fn reads_a_unix_socket_directory() {
        let o = PgOptions::parse("postgresql://postgres@/postgres?host=/tmp/pg").unwrap();
        assert_eq!(o.database(), Some("postgres"));
        assert_eq!(o.with_database("other").database(), Some("other"));
        assert!(o.ca_file.is_none());
        assert_eq!(
            o.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn a_bad_url_is_an_error_that_hides_the_password() {
        for url in [
            "postgres://hub:s3cret@db/x?sslmode=sometimes",
            "postgres://hub:s3cret@db/x?sslrootcert=%zz",
            "mysql://hub:s3cret@db/x",
        ] {
            let e = PgOptions::parse(url).unwrap_err().to_string();
            assert!(e.contains("invalid PostgreSQL URL"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
