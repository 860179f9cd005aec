//! Source layout checks for CI, read from the source text alone (no
//! compiler, no rust-analyzer):
//!
//! - [`ImportGraph`]: which file of a crate imports from which other
//!   (`use crate::…`, `use super::…`, grouped uses, and `crate::…` /
//!   `super::…` paths in code), and the circles in that graph;
//! - [`oversized_files`]: files whose non-test part is over a line limit.

#![forbid(unsafe_code)]

mod graph;
mod references;
mod tokens;

use std::path::{Path, PathBuf};

pub use graph::{
    module_of, strongly_connected_components, Circle, Edge, ImportGraph, SourceFile, TestModules,
};
pub use references::{references, Reference};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: no [workspace] members list")]
    NoMembers { path: PathBuf },
}

/// Every `.rs` file under `dir`, recursively, sorted.
pub fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, LayoutError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LayoutError::Io { path, source }
    };
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Lines of `source` that count towards the size limit: those before the
/// first `#[cfg(test)]` module (test-only code does not count).
pub fn counted_lines(source: &str) -> usize {
    let lines: Vec<&str> = source.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "#[cfg(test)]" {
            continue;
        }
        let item = lines[i + 1..]
            .iter()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && !l.starts_with("#[") && !l.starts_with("//"));
        if item.is_some_and(is_module_item) {
            return i;
        }
    }
    lines.len()
}

fn is_module_item(line: &str) -> bool {
    let item = ["pub(crate) ", "pub(super) ", "pub "]
        .iter()
        .find_map(|v| line.strip_prefix(v))
        .unwrap_or(line);
    item.starts_with("mod ")
}

/// A file over the line limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedFile {
    pub path: PathBuf,
    /// Lines before the first `#[cfg(test)]` module.
    pub lines: usize,
}

/// Every `.rs` file under `dir` with more than `limit` counted lines.
pub fn oversized_files(dir: &Path, limit: usize) -> Result<Vec<OversizedFile>, LayoutError> {
    let mut out = Vec::new();
    for path in rust_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|source| LayoutError::Io {
            path: path.clone(),
            source,
        })?;
        let lines = counted_lines(&text);
        if lines > limit {
            out.push(OversizedFile { path, lines });
        }
    }
    Ok(out)
}

/// The member directories of the workspace whose root manifest is
/// `root/Cargo.toml` (plain paths; globs are not expanded).
pub fn workspace_members(root: &Path) -> Result<Vec<PathBuf>, LayoutError> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| LayoutError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: toml::Table = text.parse().map_err(|source| LayoutError::Manifest {
        path: path.clone(),
        source,
    })?;
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .ok_or_else(|| LayoutError::NoMembers { path: path.clone() })?;
    Ok(members
        .iter()
        .filter_map(|m| m.as_str())
        .map(|m| root.join(m))
        .collect())
}

#[cfg(test)]
mod tests;
