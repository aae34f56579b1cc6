//! Applying a backend's migrations, shared by both backends.

use crate::conn::{Backend, Finish, MigrationReport};
use crate::error::StoreError;
use crate::value::Param;

/// Applies `migrations` (version, name, SQL) over `conn`, each in its own transaction run by
/// `in_transaction`. Shared by both backends.
pub(crate) fn apply_migrations(
    backend: &dyn Backend,
    migrations: &[(i64, &'static str, &'static str)],
    lock: Option<&'static str>,
) -> Result<MigrationReport, StoreError> {
    backend.write_transaction(&mut |conn| {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kith_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )?;
        Ok(Finish::Commit)
    })?;
    let mut applied = Vec::new();
    let mut current_version = 0;
    for &(version, name, sql) in migrations {
        let mut ran = false;
        backend.write_transaction(&mut |conn| {
            if let Some(lock) = lock {
                conn.execute(lock, &[])?;
            }
            let rows = conn.query("SELECT version FROM kith_migrations WHERE version = ?", &[Param::Int(version)])?;
            ran = false;
            if !rows.is_empty() {
                return Ok(Finish::Rollback);
            }
            conn.execute_batch(sql)?;
            conn.execute(
                "INSERT INTO kith_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                &[Param::Int(version), Param::Text(name), Param::Int(now_micros())],
            )?;
            ran = true;
            Ok(Finish::Commit)
        })?;
        if ran {
            applied.push(format!("{version:04}_{name}"));
        }
        current_version = version;
    }
    let mut newest = 0;
    backend.read_transaction(&mut |conn| {
        let rows = conn.query("SELECT MAX(version) FROM kith_migrations", &[])?;
        newest = rows.first().map(|row| row.opt_int(0)).transpose()?.flatten().unwrap_or(0);
        Ok(())
    })?;
    if newest > current_version {
        return Err(StoreError::corrupt(format!(
            "the database is at schema version {newest}, newer than this Kith knows ({current_version}): run a newer Kith"
        )));
    }
    Ok(MigrationReport { applied, current_version })
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
