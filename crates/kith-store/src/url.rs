//! Where the data lives: `KITH_DATABASE_URL`, parsed, and printed without its password.

use std::fmt;
use std::path::PathBuf;

/// Where the data lives, from `KITH_DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// `postgres://…` / `postgresql://…`, or `sqlite://PATH` (`sqlite:///abs/path` or
    /// `sqlite://relative/path`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("a sqlite:// URL needs a file path, e.g. sqlite://./kith-data/kith.db".to_owned());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err("KITH_DATABASE_URL must start with postgres://, postgresql:// or sqlite://".to_owned())
    }
}

/// Never prints a PostgreSQL password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &url[scheme_end + 3..at];
                    let user = credentials.split(':').next().unwrap_or_default();
                    write!(f, "{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                _ => f.write_str(url),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/kith.db").unwrap(),
            DatabaseUrl::Sqlite("./data/kith.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/kith.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/kith.db".into())
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        let pg = DatabaseUrl::parse("postgres://kith:s3cret@db.internal:5432/kith").unwrap();
        assert_eq!(pg.to_string(), "postgres://kith:***@db.internal:5432/kith");
        assert!(!format!("{pg:?}").contains("s3cret"));
    }
}
