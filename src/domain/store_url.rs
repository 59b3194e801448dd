//! `store.url`, parsed once: which backend it names (a SQLite file, SQLite in memory, or a
//! PostgreSQL database), the SQLite file's path, and the URL as it may be shown (without its
//! password). Settings, the store, start-up and the commands all read it from here, where each
//! used to check the scheme of a string itself.

use std::fmt;
use std::path::PathBuf;

/// The SQLite file a store URL names when none is set.
const DEFAULT_URL: &str = "sqlite://data/feedback-dispatch.db";

/// The database `store.url` names. `Debug` and `Display` show it without its password; only
/// the store reads the full text ([`StoreUrl::as_str`]), to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The URL as given.
    text: String,
    /// The backend its scheme names.
    backend: StoreBackend,
}

/// The backend a [`StoreUrl`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    /// `sqlite://path` or `sqlite::memory:`: the embedded default, for one process.
    Sqlite,
    /// `postgres://` or `postgresql://`: one database for several replicas.
    Postgres,
}

/// A store URL whose scheme names no backend this build supports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported store URL scheme {scheme:?} (expected sqlite://path or postgres://user@host/db)")]
pub struct StoreUrlError {
    /// The scheme given (the text before the first `:`), never the rest, which may hold a
    /// password.
    pub scheme: String,
}

impl StoreUrl {
    /// Reads a store URL by its scheme: `sqlite:` (a path or `:memory:`), or `postgres://` /
    /// `postgresql://`. The rest of a PostgreSQL URL is checked by `check-config` and read by
    /// the driver when it connects.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreUrlError> {
        let backend = if text.starts_with("sqlite:") {
            StoreBackend::Sqlite
        } else if is_postgres(text) {
            StoreBackend::Postgres
        } else {
            return Err(StoreUrlError {
                scheme: text.split(':').next().unwrap_or(text).to_string(),
            });
        };
        Ok(StoreUrl {
            text: text.to_string(),
            backend,
        })
    }

    /// The backend the URL names.
    pub fn backend(&self) -> StoreBackend {
        self.backend
    }

    /// Whether the URL names a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.backend == StoreBackend::Postgres
    }

    /// Whether the URL names a SQLite database kept in memory (one per process, gone at exit).
    pub fn is_memory(&self) -> bool {
        self.backend == StoreBackend::Sqlite && self.text.contains(":memory:")
    }

    /// The SQLite file the URL names (`sqlite://data/x.db?mode=rwc` → `data/x.db`); `None` in
    /// memory or on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.backend != StoreBackend::Sqlite || self.is_memory() {
            return None;
        }
        let path = self.text.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        Some(PathBuf::from(path.split('?').next().unwrap_or(path)))
    }

    /// The full URL, password included: for the driver only, never for a log or a message.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL with any password replaced by `***`, for logs and error messages.
    pub fn redacted(&self) -> String {
        redact_url(&self.text)
    }
}

impl Default for StoreUrl {
    /// A SQLite file in `data/`, the store when `store.url` is not set.
    fn default() -> Self {
        StoreUrl {
            text: DEFAULT_URL.to_string(),
            backend: StoreBackend::Sqlite,
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({:?})", self.redacted())
    }
}

/// Whether `url` names a PostgreSQL database.
pub(super) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Query parameters that carry a secret in a PostgreSQL connection URL (libpq's keywords).
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// `url` with any password replaced by `***`, for logs and error messages (a store URL, or a
/// LangSmith endpoint that may carry one): the one in its user info and any given as a query
/// parameter (`?password=…`, `?sslpassword=…`, as libpq accepts them).
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let mut changed = false;
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
                changed = true;
            }
            let secret = |k: &str| SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k));
            if parsed.query_pairs().any(|(k, _)| secret(&k)) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret(&k) { "***".to_string() } else { v.into_owned() };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
                changed = true;
            }
            if changed { parsed.to_string() } else { url.to_string() }
        }
        // Not a URL the parser takes: keep the scheme and say nothing of the rest, which may
        // hold a password.
        Err(_) if url.contains('@') || url.contains('?') => {
            format!("{}://***", url.split("://").next().unwrap_or(""))
        }
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact_url("postgres://fd:s3cret@db:5432/feedback"),
            "postgres://fd:***@db:5432/feedback"
        );
        assert_eq!(redact_url("postgres://fd@db/feedback"), "postgres://fd@db/feedback");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn a_password_given_as_a_query_parameter_is_not_shown() {
        assert_eq!(
            redact_url("postgres://db/feedback?user=fd&password=s3cret&sslmode=require"),
            "postgres://db/feedback?user=fd&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://fd:a@db/x?sslpassword=k3y&PassWord=p"),
            "postgresql://fd:***@db/x?sslpassword=***&PassWord=***"
        );
        let store = StoreUrl::parse("postgres://db/feedback?password=s3cret").unwrap();
        assert!(!format!("{store} {store:?}").contains("s3cret"), "{store} {store:?}");
        assert_eq!(redact_url("postgres://fd:p@ss@[bad/db"), "postgres://***");
        assert!(is_postgres("postgresql://db/x") && is_postgres("postgres://db/x") && !is_postgres("sqlite://x"));
    }

    #[test]
    fn a_store_url_names_its_backend_and_file_and_hides_its_password_when_shown() {
        let pg = StoreUrl::parse("postgres://fd:s3cret@db:5432/feedback").unwrap();
        assert!(pg.is_postgres() && pg.sqlite_path().is_none());
        assert_eq!(pg.to_string(), "postgres://fd:***@db:5432/feedback");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(pg.as_str(), "postgres://fd:s3cret@db:5432/feedback");

        let file = StoreUrl::parse("sqlite://data/x.db?mode=rwc").unwrap();
        assert_eq!(file.backend(), StoreBackend::Sqlite);
        assert_eq!(file.sqlite_path(), Some(PathBuf::from("data/x.db")));
        let memory = StoreUrl::parse("sqlite::memory:").unwrap();
        assert!(memory.is_memory() && memory.sqlite_path().is_none());
        assert_eq!(
            StoreUrl::default().sqlite_path(),
            Some(PathBuf::from("data/feedback-dispatch.db"))
        );

        for bad in ["mysql://db/x", "data/x.db", ""] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(StoreUrl::parse("mysql://u:pw@db/x").unwrap_err().scheme, "mysql");
    }
}
