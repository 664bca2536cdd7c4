//! The SQL models: the algorithm, one query per file in `sql/`, layered
//! staging → per log → snapshot tables → groups → per group. They are
//! embedded in the binary; an analyst can point `--sql-dir` at a folder
//! holding edited copies to try a change without rebuilding (a file missing
//! there falls back to the embedded one).
//!
//! The algorithm version is the sha256 of every model's text plus the crate
//! version: a result is reused only when it was computed by the same version.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The embedded models, in dependency order.
const EMBEDDED: [(&str, &str); 10] = [
    (
        "stg_clean_rows",
        include_str!("../../sql/stg_clean_rows.sql"),
    ),
    ("log_analysis", include_str!("../../sql/log_analysis.sql")),
    (
        "snapshot_analysis",
        include_str!("../../sql/snapshot_analysis.sql"),
    ),
    (
        "fuel_by_speed_band",
        include_str!("../../sql/fuel_by_speed_band.sql"),
    ),
    ("group_keys", include_str!("../../sql/group_keys.sql")),
    ("group_members", include_str!("../../sql/group_members.sql")),
    (
        "group_member_bands",
        include_str!("../../sql/group_member_bands.sql"),
    ),
    ("group_average", include_str!("../../sql/group_average.sql")),
    (
        "group_average_bands",
        include_str!("../../sql/group_average_bands.sql"),
    ),
    (
        "snapshot_average",
        include_str!("../../sql/snapshot_average.sql"),
    ),
];

/// One model: the view name (its file stem) and its query.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: &'static str,
    pub query: String,
    /// Whether the query came from `--sql-dir` rather than the binary.
    pub overridden: bool,
}

impl Model {
    /// The sha256 of the query text, recorded in snapshot manifests.
    pub fn sha256(&self) -> String {
        format!("{:x}", Sha256::digest(self.query.as_bytes()))
    }
}

/// The set of models a run uses.
#[derive(Debug, Clone)]
pub struct Models {
    models: Vec<Model>,
}

impl Models {
    /// The models compiled into the binary.
    pub fn embedded() -> Self {
        Self {
            models: EMBEDDED
                .iter()
                .map(|(name, query)| Model {
                    name,
                    query: (*query).to_string(),
                    overridden: false,
                })
                .collect(),
        }
    }

    /// The embedded models, each replaced by `<dir>/<name>.sql` where it exists.
    pub fn from_dir(dir: &Path) -> std::io::Result<Self> {
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("SQL folder {} does not exist", dir.display()),
            ));
        }
        let mut models = Self::embedded();
        for model in &mut models.models {
            let path = dir.join(format!("{}.sql", model.name));
            if path.exists() {
                let query = std::fs::read_to_string(&path)?;
                model.overridden = query != model.query;
                model.query = query;
            }
        }
        Ok(models)
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Model> {
        self.models.iter()
    }

    /// The models whose text differs from the embedded one.
    pub fn overridden(&self) -> Vec<&'static str> {
        self.models
            .iter()
            .filter(|m| m.overridden)
            .map(|m| m.name)
            .collect()
    }

    /// The algorithm version: sha256 over the crate version and every
    /// model's name and text, in order.
    pub fn version(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(concat!("fap-warehouse ", env!("CARGO_PKG_VERSION"), "\n"));
        for model in &self.models {
            hash.update(model.name.as_bytes());
            hash.update(b"\n");
            hash.update(model.query.as_bytes());
            hash.update(b"\n");
        }
        format!("{:x}", hash.finalize())
    }
}

#[cfg(test)]
#[path = "models_tests.rs"]
mod tests;
