//! Stage 4: what consumers lack, and what changed between two snapshots.
//!
//! - [`outgoing_analyses`]: every analysis whose status or object differs
//!   from what the catalog holds (compared as hashes: see
//!   [`crate::analysis::jsonb::result_hash`]); then
//!   [`Outgoing::add_averages`]: every group whose held average is not
//!   `SUCCESS` with the same `analysisSha`. Read from the
//!   staged snapshot: recomputed and carried-over rows alike, so a result
//!   lost on the way is sent again by the next run.
//! - [`compare`]: per metric, how many analyses and averages differ between
//!   two snapshots and by how much at most (the change report of `run
//!   --dry-run`, and `snapshots diff`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::ParquetReadOptions;
use serde_json::{Value, json};

use super::JobError;
use super::plan::RunPlan;
use super::snapshot::{self, Staging, Table, read_parquet, text_column};
use crate::analysis::average::GroupKey;
use crate::analysis::engine::Engine;
use crate::catalog::{Catalog, col};

/// What this run sends.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Shared with the task that writes them ([`super::deliver::Outbox`]).
    pub analyses: Arc<HashSet<String>>,
    pub averages: HashSet<GroupKey>,
    /// Failed analyses in the snapshot, and the most frequent messages.
    pub failed: usize,
    pub failures: Vec<(String, usize)>,
    /// Groups in the snapshot.
    pub groups: usize,
}

/// What consumers hold of each group: (status, analysisSha).
pub type HeldAverages = HashMap<GroupKey, (String, Option<String>)>;

/// What consumers hold of each group.
pub async fn held_averages(catalog: &Catalog) -> Result<HeldAverages, JobError> {
    Ok(catalog
        .averages()
        .await?
        .into_iter()
        .map(|a| {
            let key = GroupKey {
                user_id: a.user_id,
                kind: a.kind,
                year: a.year,
                month: a.month,
            };
            (key, (a.status, a.sha256))
        })
        .collect())
}

/// The analyses of the staged snapshot that consumers lack, and its failed
/// analyses; the groups are added once averaged ([`Outgoing::add_averages`]).
pub fn outgoing_analyses(
    staging: &Staging,
    plan: &RunPlan,
    force: bool,
) -> Result<Outgoing, JobError> {
    let mut analyses = HashSet::new();
    let mut failed = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for bucket in 0..snapshot::BUCKETS {
        let Some(path) = staging.file(Table::Analysis, bucket) else {
            continue;
        };
        for batch in read_parquet(
            &path,
            Some(&["analysis_id", "status", "message", "result_sha256"]),
        )? {
            let ids = text_column(&batch, "analysis_id")?;
            let status = text_column(&batch, "status")?;
            let message = text_column(&batch, "message")?;
            let hash = text_column(&batch, "result_sha256")?;
            for row in 0..batch.num_rows() {
                if status.value(row) != "Success" {
                    failed += 1;
                    *failures.entry(message.value(row).to_string()).or_default() += 1;
                }
                let held = plan
                    .catalog
                    .row(ids.value(row))
                    .map(|r| plan.catalog.get(r, col::HELD_SHA256));
                if force || held != Some(hash.value(row)) {
                    analyses.insert(ids.value(row).to_string());
                }
            }
        }
    }
    let mut failures: Vec<(String, usize)> = failures.into_iter().collect();
    failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Outgoing {
        analyses: Arc::new(analyses),
        failed,
        failures,
        ..Outgoing::default()
    })
}

impl Outgoing {
    /// Adds the groups of the staged `average` table whose held average is
    /// not `SUCCESS` with the same `analysisSha`.
    pub fn add_averages(
        &mut self,
        staging: &Staging,
        held: &HeldAverages,
        force: bool,
    ) -> Result<(), JobError> {
        for bucket in 0..snapshot::BUCKETS {
            let Some(path) = staging.file(Table::Average, bucket) else {
                continue;
            };
            for batch in read_parquet(
                &path,
                Some(&["user_id", "type", "year", "month", "analysis_sha"]),
            )? {
                let shas = text_column(&batch, "analysis_sha")?;
                for row in 0..batch.num_rows() {
                    self.groups += 1;
                    let key = GroupKey::of_row(&batch, row);
                    let current = held.get(&key).is_some_and(|(status, sha)| {
                        status == "SUCCESS" && sha.as_deref() == Some(shas.value(row))
                    });
                    if force || !current {
                        self.averages.insert(key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Per metric of one table: rows that differ and the largest difference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricChange {
    pub metric: String,
    pub changed: u64,
    pub max_abs_diff: Option<f64>,
}

/// How one table differs between two snapshots.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableChange {
    pub added: u64,
    pub removed: u64,
    /// Rows present in both whose object differs.
    pub changed: u64,
    /// Metrics with at least one difference, most changed first.
    pub metrics: Vec<MetricChange>,
    /// Columns only the new table has, or only the old one (not compared).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns_removed: Vec<String>,
}

/// How two snapshots differ.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub old: Option<String>,
    pub new: String,
    pub analysis: TableChange,
    pub average: TableChange,
}

/// Compares the `analysis` and `average` tables of two snapshot folders
/// (`old` absent: everything is added).
pub async fn compare(
    engine: &Engine,
    old: Option<&Path>,
    new: &Path,
) -> Result<Comparison, JobError> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(Comparison {
        old: old.map(name),
        new: name(new),
        analysis: compare_table(
            engine,
            old,
            new,
            Table::Analysis,
            &["analysis_id"],
            "analysis_json",
        )
        .await?,
        average: compare_table(
            engine,
            old,
            new,
            Table::Average,
            &["user_id", "type", "year", "month"],
            "average_json",
        )
        .await?,
    })
}

/// Columns that are not metrics.
const NOT_METRICS: [&str; 15] = [
    "analysis_id",
    "user_id",
    "file_name",
    "file_sha256",
    "status",
    "message",
    "analysis_json",
    "analysis_jsonb",
    "result_sha256",
    "type",
    "year",
    "month",
    "analysis_sha",
    "average_json",
    "n_analyses",
];

async fn compare_table(
    engine: &Engine,
    old: Option<&Path>,
    new: &Path,
    table: Table,
    keys: &[&str],
    object: &str,
) -> Result<TableChange, JobError> {
    let ctx = engine.context();
    let register = |alias: &'static str, dir: PathBuf| {
        let ctx = ctx.clone();
        async move {
            ctx.register_parquet(
                alias,
                dir.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await
        }
    };
    register("n", new.join(table.name())).await?;
    let Some(old) = old else {
        let rows = ctx.sql("SELECT count(*) FROM n").await?.collect().await?;
        let added = rows
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        return Ok(TableChange {
            added: added.max(0) as u64,
            ..TableChange::default()
        });
    };
    register("o", old.join(table.name())).await?;
    // Only columns both tables have are compared: an experiment may add
    // or drop some.
    let schema = ctx.table("n").await?.schema().as_arrow().clone();
    let old_schema = ctx.table("o").await?.schema().as_arrow().clone();
    let names = |s: &datafusion::arrow::datatypes::Schema| -> Vec<String> {
        s.fields().iter().map(|f| f.name().clone()).collect()
    };
    let (new_names, old_names) = (names(&schema), names(&old_schema));
    let columns_added: Vec<String> = new_names
        .iter()
        .filter(|n| !old_names.contains(n))
        .cloned()
        .collect();
    let columns_removed: Vec<String> = old_names
        .iter()
        .filter(|n| !new_names.contains(n))
        .cloned()
        .collect();
    let metrics: Vec<(String, bool)> = schema
        .fields()
        .iter()
        .filter(|f| !NOT_METRICS.contains(&f.name().as_str()))
        .filter(|f| old_names.contains(f.name()))
        .map(|f| (f.name().clone(), f.data_type().is_numeric()))
        .collect();
    let on = keys
        .iter()
        .map(|k| format!("(n.{k} IS NOT DISTINCT FROM o.{k})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let both = format!("n.{k} IS NOT NULL AND o.{k} IS NOT NULL", k = keys[0]);
    let mut select = vec![
        format!("count(*) FILTER (WHERE o.{} IS NULL) AS added", keys[0]),
        format!("count(*) FILTER (WHERE n.{} IS NULL) AS removed", keys[0]),
        format!(
            "count(*) FILTER (WHERE ({both}) AND (n.{object} IS DISTINCT FROM o.{object})) AS changed"
        ),
    ];
    for (metric, numeric) in &metrics {
        select.push(format!(
            "count(*) FILTER (WHERE ({both}) AND (n.\"{metric}\" IS DISTINCT FROM o.\"{metric}\")) AS \"{metric}__changed\""
        ));
        if *numeric {
            select.push(format!(
                "max(abs(CAST(n.\"{metric}\" AS DOUBLE) - CAST(o.\"{metric}\" AS DOUBLE))) AS \"{metric}__max\""
            ));
        }
    }
    let sql = format!("SELECT {} FROM n FULL JOIN o ON {on}", select.join(", "));
    let batches = ctx.sql(&sql).await?.collect().await?;
    let Some(batch) = batches.first() else {
        return Ok(TableChange::default());
    };
    let count = |name: &str| -> u64 {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>())
            .map_or(0, |a| a.value(0).max(0) as u64)
    };
    let float = |name: &str| -> Option<f64> {
        let c = batch.column_by_name(name)?;
        if c.is_null(0) || c.data_type() != &DataType::Float64 {
            return None;
        }
        Some(
            c.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0),
        )
    };
    let mut changes: Vec<MetricChange> = metrics
        .iter()
        .map(|(metric, _)| MetricChange {
            metric: metric.clone(),
            changed: count(&format!("{metric}__changed")),
            max_abs_diff: float(&format!("{metric}__max")),
        })
        .filter(|m| m.changed > 0)
        .collect();
    changes.sort_by(|a, b| {
        b.changed
            .cmp(&a.changed)
            .then_with(|| a.metric.cmp(&b.metric))
    });
    Ok(TableChange {
        added: count("added"),
        removed: count("removed"),
        changed: count("changed"),
        metrics: changes,
        columns_added,
        columns_removed,
    })
}

/// Writes the change report of an experiment into its folder; returns its path.
pub async fn change_report(
    engine: &Engine,
    parent: Option<&Path>,
    experiment: &Path,
) -> Result<PathBuf, JobError> {
    let comparison = compare(engine, parent, experiment).await?;
    let path = experiment.join("changes.json");
    let text = serde_json::to_string_pretty(&json!(comparison)).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| snapshot::SnapshotError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads a change report back (for printing).
pub fn read_report(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
