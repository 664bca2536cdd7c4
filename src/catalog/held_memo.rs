//! The hashes of what consumers hold, remembered between runs.
//!
//! Every run reads what consumers hold of each analysis and hashes it as
//! the backend prints it back (parsed, printed as jsonb, sha256). At 100k
//! logs that is most of a rerun with nothing new: 100k objects parsed to
//! find that none changed. The hash is a function of the row's status and
//! stored text alone, so a run remembers it under the sha256 of those two,
//! in a file of the warehouse rewritten with the rows each run read (not
//! at all when they are what it already held).
//! A text that changed in any way is a new key, parsed and hashed again.
//!
//! The file is a cache: missing, unreadable, or written by another
//! analyser version, it is ignored and every object is hashed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::analysis::jsonb;

/// sha256 of a row's status and stored text ([`key`]), and of its status
/// and object as the backend prints it (the held hash, as bytes).
pub type Key = [u8; 32];

/// The first line of the file: its format and the analyser that wrote it.
fn header() -> String {
    format!("fap-warehouse held hashes v1 {}\n", crate::job::VERSION)
}

/// Held hashes by [`key`].
#[derive(Debug, Default)]
pub struct HeldMemo {
    known: HashMap<Key, Key>,
}

impl HeldMemo {
    /// Where a warehouse keeps it.
    pub fn path(warehouse: &Path) -> PathBuf {
        warehouse.join("held-hashes.cache")
    }

    /// The memo in `path`; empty when there is none, or none usable.
    pub fn load(path: &Path) -> Self {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "held hashes unreadable: every held object is hashed");
                return Self::default();
            }
        };
        let header = header();
        let Some(records) = bytes.strip_prefix(header.as_bytes()) else {
            tracing::info!(path = %path.display(), "held hashes of another analyser version: every held object is hashed");
            return Self::default();
        };
        let known = records
            .chunks_exact(64)
            .map(|record| {
                let (key, hash) = record.split_at(32);
                (to_array(key), to_array(hash))
            })
            .collect();
        Self { known }
    }

    /// The remembered hash under `key`.
    pub fn get(&self, key: &Key) -> Option<Key> {
        self.known.get(key).copied()
    }

    pub fn insert(&mut self, key: Key, hash: Key) {
        self.known.insert(key, hash);
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Writes it to `path` whole: to a temporary name, then renamed.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(header().len() + self.known.len() * 64);
        out.extend_from_slice(header().as_bytes());
        for (key, hash) in &self.known {
            out.extend_from_slice(key);
            out.extend_from_slice(hash);
        }
        let temporary = path.with_extension("cache.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&out)?;
        drop(file);
        std::fs::rename(&temporary, path)
    }
}

/// The key of a row with `status` and stored analysis `text`: the same
/// digest as the held hash, over the text as stored instead of as printed.
pub fn key(status: &str, text: &str) -> Key {
    jsonb::result_digest(status, text)
}

fn to_array(bytes: &[u8]) -> Key {
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_memo_loads_with_the_same_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = HeldMemo::path(dir.path());
        let hash = jsonb::result_digest("Success", "{\"a\":1}");
        let mut memo = HeldMemo::default();
        memo.insert(key("Success", "{\"a\": 1}"), hash);
        memo.save(&path).unwrap();

        let loaded = HeldMemo::load(&path);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded.get(&key("Success", "{\"a\": 1}")), Some(hash));
        // Another status or another text is another key.
        assert_eq!(loaded.get(&key("Failed", "{\"a\": 1}")), None);
        assert_eq!(loaded.get(&key("Success", "{\"a\": 2}")), None);
    }

    #[test]
    fn a_file_of_another_version_or_none_is_an_empty_memo() {
        let dir = tempfile::tempdir().unwrap();
        let path = HeldMemo::path(dir.path());
        assert!(HeldMemo::load(&path).is_empty());
        let mut bytes = b"fap-warehouse held hashes v1 fap-warehouse 0.0.0-older\n".to_vec();
        bytes.extend_from_slice(&[7u8; 64]);
        std::fs::write(&path, bytes).unwrap();
        assert!(HeldMemo::load(&path).is_empty());
    }

    #[test]
    fn a_remembered_hash_is_the_held_hash_in_hex() {
        let hash = jsonb::result_hash("Success", "{}");
        assert_eq!(jsonb::hex(jsonb::result_digest("Success", "{}")), hash);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
