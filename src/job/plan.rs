//! Stage 1: what this run must do.
//!
//! An analysis is a function of (the log's sha256, the algorithm version).
//! The parent snapshot holds each analysis it computed with its log's
//! sha256; when it was computed by the current version, the result is
//! reused and the log is not opened. Everything else is analysed, and its
//! user's averages are recomputed. A failure that says nothing of the
//! log's bytes (unreadable, changed since upload, over the limits) is not
//! reused: such a log is read again by every run until it is analysed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::JobError;
use super::snapshot::{self, Parent, Table, text_column};
use crate::catalog::held_memo::HeldMemo;
use crate::catalog::{Catalog, CatalogIndex, col};
use crate::scan::LogInput;
use crate::scan::log_file::is_retried;
use crate::volume::Volume;

/// A result of the parent snapshot.
#[derive(Debug, Clone)]
pub struct ParentRow {
    pub user_id: String,
    pub file_sha256: String,
    /// A failure that says nothing of the log's bytes ([`is_retried`]).
    pub retried: bool,
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
    /// Per user with held-only objects, a digest of them (recorded in the
    /// manifest: the next run recomputes the user only if it differs).
    pub held_only_digests: BTreeMap<String, String>,
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
    let mut reuse = reuses(parent.as_ref(), version, full);
    let parent_rows = match (&parent, reuse) {
        (Some(p), true) => parent_rows(p).unwrap_or_else(|err| {
            // Analysing again gives the same results: a damaged snapshot
            // costs one full run, never every run from now on.
            tracing::warn!(snapshot = %p.id, %err, "the latest snapshot's results cannot be read: every log is analysed again");
            reuse = false;
            HashMap::new()
        }),
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
    let mut held_lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fingerprint = Sha256::new();
    fingerprint.update(version.as_bytes());
    for row in 0..index.len() {
        let id = index.get(row, col::ANALYSIS_ID);
        let user = index.get(row, col::USER_ID);
        let sha = index.get(row, col::FILE_SHA256);
        fingerprint.update(format!("\n{id} {sha}").as_bytes());
        let previous = parent_rows.get(id);
        let stored = previous
            .filter(|p| !p.retried && p.file_sha256.eq_ignore_ascii_case(sha) && p.user_id == user);
        let file = files.get(id);
        if file.is_none() {
            missing.push(id.to_string());
        }
        if stored.is_some() {
            reused += 1;
            continue;
        }
        if let Some(previous) = previous {
            superseded.insert(id.to_string());
            // An analysis moved to another user leaves its old user's groups.
            changed_users.insert(previous.user_id.clone());
        }
        match file {
            Some(bytes) => {
                changed_users.insert(user.to_string());
                to_analyse.push(LogInput {
                    log_id: id.to_string(),
                    location: volume.location(id),
                    bytes: *bytes,
                    sha256: Some(sha.to_string()),
                });
            }
            // No log and no result: only what consumers hold of a success
            // counts (in its user's averages).
            None if index.get(row, col::HELD_STATUS) == "Success" => {
                held_only.push(id.to_string());
                held_lines
                    .entry(user.to_string())
                    .or_default()
                    .push(format!("{id} {}", index.get(row, col::HELD_SHA256)));
            }
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
    // A user's held-only objects change their averages only when they
    // differ from those the parent averaged.
    let held_only_digests = held_only_digests(held_lines);
    let parent_digests = parent
        .as_ref()
        .filter(|_| reuse)
        .and_then(|p| p.manifest[HELD_ONLY].as_object());
    let parent_keys = parent_digests.into_iter().flat_map(|d| d.keys());
    for user in held_only_digests.keys().chain(parent_keys) {
        let before = parent_digests.and_then(|d| d.get(user)?.as_str());
        if before != held_only_digests.get(user).map(String::as_str) {
            changed_users.insert(user.clone());
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
        held_only_digests,
        fingerprint: format!("{:x}", fingerprint.finalize()),
    })
}

/// The manifest key of [`RunPlan::held_only_digests`].
pub const HELD_ONLY: &str = "held_only";

/// Per user, a digest of their held-only objects: `analysis id, held hash`
/// lines, sorted.
fn held_only_digests(lines: BTreeMap<String, Vec<String>>) -> BTreeMap<String, String> {
    lines
        .into_iter()
        .map(|(user, mut lines)| {
            lines.sort();
            (user, format!("{:x}", Sha256::digest(lines.join("\n"))))
        })
        .collect()
}

/// The parent's results: analysis id → (user, log sha256, retried).
fn parent_rows(parent: &Parent) -> Result<HashMap<String, ParentRow>, JobError> {
    let mut rows = HashMap::new();
    let columns = ["analysis_id", "user_id", "file_sha256", "status", "message"];
    for batch in parent.read(Table::Analysis, &columns)? {
        let ids = text_column(&batch, "analysis_id")?;
        let users = text_column(&batch, "user_id")?;
        let shas = text_column(&batch, "file_sha256")?;
        let status = text_column(&batch, "status")?;
        let message = text_column(&batch, "message")?;
        for i in 0..batch.num_rows() {
            rows.insert(
                ids.value(i).to_string(),
                ParentRow {
                    user_id: users.value(i).to_string(),
                    file_sha256: shas.value(i).to_string(),
                    retried: status.value(i) != "Success" && is_retried(message.value(i)),
                },
            );
        }
    }
    Ok(rows)
}
