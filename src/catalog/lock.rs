//! The run lock: one run (or prune) at a time per catalog.
//!
//! Every run — scheduled by `serve` on any instance, or by hand — and every
//! `snapshots prune` takes it first; one that finds it held is skipped (exit
//! 3), never queued. It is keyed by the catalog's identity, not by a
//! warehouse folder: with the backend's PostgreSQL it is an advisory lock of
//! that database, held by a dedicated session; with the embedded SQLite
//! catalog, a file lock next to the catalog file.
//!
//! A lock held through a database session can be lost silently (the
//! connection is cut, and another run takes it). So a run calls
//! [`RunLock::check`] before it publishes a snapshot and before it delivers,
//! and stops with "run lock lost" when the lock is gone.

use std::path::{Path, PathBuf};

use sqlx::Connection;

use super::Catalog;

/// The advisory lock's key: `hashtext('fap-warehouse:run:<state schema>')`.
pub fn advisory_key(state: &super::StateSchema) -> String {
    format!("fap-warehouse:run:{state}")
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("run lock: {0}")]
    Take(String),
    #[error(
        "run lock lost ({0}): another run may hold it now; nothing more is published or delivered"
    )]
    Lost(String),
}

/// A held run lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub enum RunLock {
    File {
        file: std::fs::File,
        path: PathBuf,
    },
    Postgres {
        conn: tokio::sync::Mutex<sqlx::PgConnection>,
        key: String,
    },
}

impl RunLock {
    /// Takes the lock of `catalog`, or `None` when another run holds it.
    /// `warehouse` holds the lock file of a catalog that is no file.
    pub async fn try_take(catalog: &Catalog, warehouse: &Path) -> Result<Option<Self>, LockError> {
        let take = |e: &dyn std::fmt::Display| LockError::Take(e.to_string());
        match catalog {
            Catalog::Postgres(pool, state) => {
                // A session of its own, named for whoever reads pg_stat_activity.
                let options = pool
                    .connect_options()
                    .as_ref()
                    .clone()
                    .application_name("fap-warehouse run lock");
                let mut conn = sqlx::PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| take(&e))?;
                let key = advisory_key(state);
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                    .bind(&key)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| take(&e))?;
                Ok(got.then(|| Self::Postgres {
                    conn: tokio::sync::Mutex::new(conn),
                    key,
                }))
            }
            Catalog::Sqlite(_) => {
                let path = match catalog.embedded_path() {
                    Some(db) if db.as_os_str() != ":memory:" && !db.as_os_str().is_empty() => {
                        let mut name = db.file_name().unwrap_or_default().to_os_string();
                        name.push(".run.lock");
                        db.with_file_name(name)
                    }
                    _ => warehouse.join("run.lock"),
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| take(&e))?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| take(&e))?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(Self::File { file, path })),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => Err(take(&e)),
                }
            }
        }
    }

    /// Proves the lock is still held: for PostgreSQL, its session is alive
    /// and still owns the advisory lock.
    pub async fn check(&self) -> Result<(), LockError> {
        match self {
            Self::File { .. } => Ok(()),
            Self::Postgres { conn, key } => {
                let mut conn = conn.lock().await;
                let held = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    sqlx::query_scalar::<_, bool>(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                         AND pid = pg_backend_pid() AND granted \
                         AND objid = (hashtext($1)::bigint & 4294967295)::oid)",
                    )
                    .bind(key)
                    .fetch_one(&mut *conn),
                )
                .await;
                match held {
                    Ok(Ok(true)) => Ok(()),
                    Ok(Ok(false)) => {
                        Err(LockError::Lost("the lock session no longer owns it".into()))
                    }
                    Ok(Err(e)) => Err(LockError::Lost(format!("its database session failed: {e}"))),
                    Err(_) => Err(LockError::Lost(
                        "its database session did not answer within 10 s".into(),
                    )),
                }
            }
        }
    }

    /// Where the lock lives, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Postgres { key, .. } => format!("PostgreSQL advisory lock {key:?}"),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Self::File { file, .. } = self {
            let _ = file.unlock();
        }
    }
}
