//! Stage 1: what this run must do.
//!
//! An analysis is a function of (the log's sha256, the algorithm version).
//! The parent snapshot holds each analysis it computed with its log's
//! sha256; when it was computed by the current version, the result is
//! reused and the log is not opened. Everything else is analysed, and its
//! user's averages are recomputed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use sha2::{Digest, Sha256};

use super::JobError;
use super::snapshot::{self, Parent, Table};
use crate::catalog::held_memo::HeldMemo;
use crate::catalog::{Catalog, CatalogIndex, col};
use crate::scan::LogInput;
use crate::volume::Volume;

/// A result of the parent snapshot.
#[derive(Debug, Clone)]
pub struct ParentRow {
    pub user_id: String,
    pub file_sha256: String,
}

/// What a run does.
#[derive(Debug)]
pub struct RunPlan {
    /// Every `fap_analysis` row, with what consumers hold.
    pub catalog: Arc<CatalogIndex>,
    /// The latest published snapshot.
    pub parent: Option<Parent>,
    /// Whether the parent's results are valid for this algorithm version.
    pub reuse: bool,
    /// The logs to analyse, ordered by (bucket, user, id) so results arrive
    /// bucket by bucket.
    pub to_analyse: Vec<LogInput>,
    /// How many results are reused from the parent.
    pub reused: usize,
    /// Successful analyses whose log is gone and that no snapshot holds:
    /// their held objects count in their users' averages.
    pub held_only: Vec<String>,
    /// Catalog rows without a log file (reported, left alone).
    pub missing: Vec<String>,
    /// Log files without a catalog row (reported, left alone).
    pub orphans: Vec<String>,
    /// Parent results that this run drops (re-analysed or removed).
    pub superseded: HashSet<String>,
    /// Users whose averages this run recomputes.
    pub changed_users: HashSet<String>,
    /// sha256 over the catalog's (analysis id, log sha256) pairs and the
    /// algorithm version: two runs with the same fingerprint compute the same.
    pub fingerprint: String,
}

impl RunPlan {
    /// The parent, when its results are reused.
    pub fn reusable_parent(&self) -> Option<&Parent> {
        self.parent.as_ref().filter(|_| self.reuse)
    }

    /// The snapshot buckets this run rewrites: those of changed users (all
    /// of them when nothing is reused).
    pub fn touched_buckets(&self) -> BTreeSet<usize> {
        if !self.reuse {
            return (0..snapshot::BUCKETS).collect();
        }
        self.changed_users
            .iter()
            .map(|u| snapshot::bucket(u))
            .collect()
    }
}

/// Whether a run reuses `parent`'s results: not with `--full`, nor when the
/// parent was computed by another algorithm version or bucketed otherwise.
pub fn reuses(parent: Option<&Parent>, version: &str, full: bool) -> bool {
    !full
        && parent.is_some_and(|p| {
            p.algorithm_version() == version
                && p.manifest["buckets"].as_u64() == Some(snapshot::BUCKETS as u64)
        })
}

/// Plans a run over `catalog` and `volume`, on top of `parent`; the hashes
/// of what consumers hold are remembered in `warehouse` ([`HeldMemo`]).
pub async fn plan(
    catalog: &Catalog,
    volume: &Volume,
    warehouse: &Path,
    parent: Option<Parent>,
    version: &str,
    full: bool,
) -> Result<RunPlan, JobError> {
    let memo_path = HeldMemo::path(warehouse);
    let (index, memo) = catalog.index(Arc::new(HeldMemo::load(&memo_path))).await?;
    // A cache: a run that cannot write it only hashes again next time.
    if let Some(Err(err)) = memo.map(|memo| memo.save(&memo_path)) {
        tracing::warn!(path = %memo_path.display(), %err, "held hashes not saved");
    }
    let files: HashMap<String, u64> = volume
        .list()
        .await?
        .into_iter()
        .map(|f| (f.id, f.bytes))
        .collect();
    let reuse = reuses(parent.as_ref(), version, full);
    let parent_rows = match (&parent, reuse) {
        (Some(p), true) => parent_rows(p)?,
        _ => HashMap::new(),
    };
    if parent.is_some() && !reuse {
        tracing::info!(
            full,
            "the parent snapshot's results are not reused: every log is analysed again"
        );
    }

    let mut to_analyse = Vec::new();
    let mut reused = 0;
    let mut held_only = Vec::new();
    let mut missing = Vec::new();
    let mut superseded = HashSet::new();
    let mut changed_users = HashSet::new();
    let mut fingerprint = Sha256::new();
    fingerprint.update(version.as_bytes());
    for row in 0..index.len() {
        let id = index.get(row, col::ANALYSIS_ID);
        let user = index.get(row, col::USER_ID);
        let sha = index.get(row, col::FILE_SHA256);
        fingerprint.update(format!("\n{id} {sha}").as_bytes());
        let stored = parent_rows
            .get(id)
            .filter(|p| p.file_sha256.eq_ignore_ascii_case(sha) && p.user_id == user);
        let file = files.get(id);
        if file.is_none() {
            missing.push(id.to_string());
        }
        if stored.is_some() {
            reused += 1;
            continue;
        }
        if parent_rows.contains_key(id) {
            superseded.insert(id.to_string());
        }
        changed_users.insert(user.to_string());
        match file {
            Some(bytes) => to_analyse.push(LogInput {
                log_id: id.to_string(),
                location: volume.location(id),
                bytes: *bytes,
                sha256: Some(sha.to_string()),
            }),
            None if index.get(row, col::HELD_STATUS) == "Success" => held_only.push(id.to_string()),
            None => {}
        }
    }
    // Results of analyses the catalog no longer has.
    for (id, row) in &parent_rows {
        if index.row(id).is_none() {
            superseded.insert(id.clone());
            changed_users.insert(row.user_id.clone());
        }
    }
    if !held_only.is_empty() {
        tracing::warn!(
            count = held_only.len(),
            "successful analyses have no log file and no stored result: the objects consumers hold count in their averages"
        );
    }
    to_analyse.sort_by_cached_key(|log| {
        let user = index
            .row(&log.log_id)
            .map(|r| index.get(r, col::USER_ID).to_string())
            .unwrap_or_default();
        (snapshot::bucket(&user), user, log.log_id.clone())
    });
    let mut orphans: Vec<String> = files
        .keys()
        .filter(|id| index.row(id).is_none())
        .cloned()
        .collect();
    orphans.sort();
    missing.sort();
    Ok(RunPlan {
        catalog: Arc::new(index),
        parent,
        reuse,
        to_analyse,
        reused,
        held_only,
        missing,
        orphans,
        superseded,
        changed_users,
        fingerprint: format!("{:x}", fingerprint.finalize()),
    })
}

/// The parent's results: analysis id → (user, log sha256).
fn parent_rows(parent: &Parent) -> Result<HashMap<String, ParentRow>, JobError> {
    let mut rows = HashMap::new();
    for batch in parent.read(Table::Analysis, &["analysis_id", "user_id", "file_sha256"])? {
        let ids = batch.column(0).as_string::<i32>();
        let users = batch.column(1).as_string::<i32>();
        let shas = batch.column(2).as_string::<i32>();
        for i in 0..batch.num_rows() {
            rows.insert(
                ids.value(i).to_string(),
                ParentRow {
                    user_id: users.value(i).to_string(),
                    file_sha256: shas.value(i).to_string(),
                },
            );
        }
    }
    Ok(rows)
}
