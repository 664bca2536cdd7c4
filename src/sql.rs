//! The SQL models: the algorithm, one query per file in `sql/`, layered
//! staging → per log → per group. They are embedded in the binary; an analyst
//! can point `--sql-dir` at a folder holding edited copies to try a change
//! without rebuilding (a file missing there falls back to the embedded one).

use std::path::Path;

use sha2::{Digest, Sha256};

/// The embedded models, in dependency order.
const EMBEDDED: [(&str, &str); 3] = [
    ("stg_clean_rows", include_str!("../sql/stg_clean_rows.sql")),
    ("log_analysis", include_str!("../sql/log_analysis.sql")),
    ("group_average", include_str!("../sql/group_average.sql")),
];

/// One model: the view name (its file stem) and its query.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: &'static str,
    pub query: String,
}

impl Model {
    /// The sha256 of the query text, recorded in snapshot manifests.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(self.query.as_bytes()))
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
                model.query = std::fs::read_to_string(&path)?;
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
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
