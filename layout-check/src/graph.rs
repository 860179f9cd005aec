//! The file-level import graph of one crate and its circles (strongly
//! connected components of more than one file, found with Tarjan's
//! algorithm).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::references::references;
use crate::{rust_files, LayoutError};

/// A source file and the module it defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the crate's `src/`.
    pub path: PathBuf,
    /// Module path from the crate root (`[]` for `lib.rs`/`main.rs`).
    pub module: Vec<String>,
}

/// One file importing from another, with the names it imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: PathBuf,
    pub to: PathBuf,
    /// What is imported, relative to the target module (`*` for a glob;
    /// the module's own name when the module itself is imported).
    pub names: Vec<String>,
}

/// Files that import from each other in a circle, and the edges between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circle {
    /// Sorted.
    pub files: Vec<PathBuf>,
    /// Every edge between two files of the circle, sorted.
    pub edges: Vec<Edge>,
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        writeln!(f, "circle of {} files: {}", files.len(), files.join(", "))?;
        for e in &self.edges {
            writeln!(
                f,
                "  {} -> {}: {}",
                e.from.display(),
                e.to.display(),
                e.names.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Which references make edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TestModules {
    /// References inside `#[cfg(test)] mod … { }` count like any other.
    Included,
    /// References inside `#[cfg(test)]` inline modules are ignored: a test
    /// importing from a module that depends on the tested one is no circle
    /// in the shipped code.
    Excluded,
}

/// The file-level import graph of one crate.
#[derive(Debug, Clone)]
pub struct ImportGraph {
    files: Vec<SourceFile>,
    /// (from, to) file indices -> imported names.
    edges: BTreeMap<(usize, usize), BTreeSet<String>>,
}

/// The module a file under `src/` defines, or `None` for files that are
/// crate roots of their own (`src/bin/…`).
pub fn module_of(relative: &Path) -> Option<Vec<String>> {
    let parts: Vec<String> = relative
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let (file, dirs) = parts.split_last()?;
    if dirs.first().is_some_and(|d| d == "bin") {
        return None;
    }
    let stem = file.strip_suffix(".rs")?;
    let mut module = dirs.to_vec();
    match (dirs.is_empty(), stem) {
        (true, "lib" | "main") | (_, "mod") => {}
        _ => module.push(stem.to_owned()),
    }
    Some(module)
}

impl ImportGraph {
    /// Reads every `.rs` file under `src` and builds the graph.
    pub fn from_src_dir(src: &Path, tests: TestModules) -> Result<Self, LayoutError> {
        let mut sources = Vec::new();
        for path in rust_files(src)? {
            let relative = path.strip_prefix(src).unwrap_or(&path).to_owned();
            if let Some(module) = module_of(&relative) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| LayoutError::Io { path, source })?;
                sources.push((
                    SourceFile {
                        path: relative,
                        module,
                    },
                    text,
                ));
            }
        }
        Ok(Self::from_sources(sources, tests))
    }

    /// Builds the graph from files and their text.
    pub fn from_sources(sources: Vec<(SourceFile, String)>, tests: TestModules) -> Self {
        let mut by_module: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        for (i, (file, _)) in sources.iter().enumerate() {
            // `lib.rs` over `main.rs` for the root: `main.rs` next to a
            // `lib.rs` is a binary that uses the library by name.
            let is_main = file.path == Path::new("main.rs");
            if !(is_main && by_module.contains_key(&file.module)) {
                by_module.insert(file.module.clone(), i);
            }
        }
        let mut edges: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
        for (from, (file, text)) in sources.iter().enumerate() {
            for reference in references(text, &file.module) {
                if reference.in_test_module && tests == TestModules::Excluded {
                    continue;
                }
                let path = &reference.path;
                let Some((len, &to)) = (0..=path.len())
                    .rev()
                    .find_map(|len| by_module.get(&path[..len]).map(|to| (len, to)))
                else {
                    continue;
                };
                if to == from {
                    continue;
                }
                let name = if len < path.len() {
                    path[len..].join("::")
                } else {
                    path.last().cloned().unwrap_or_else(|| "crate".to_owned())
                };
                edges.entry((from, to)).or_default().insert(name);
            }
        }
        let files = sources.into_iter().map(|(file, _)| file).collect();
        ImportGraph { files, edges }
    }

    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Every edge, sorted by (from, to).
    pub fn edges(&self) -> Vec<Edge> {
        self.edges
            .iter()
            .map(|(&(from, to), names)| self.edge(from, to, names))
            .collect()
    }

    fn edge(&self, from: usize, to: usize, names: &BTreeSet<String>) -> Edge {
        Edge {
            from: self.files[from].path.clone(),
            to: self.files[to].path.clone(),
            names: names.iter().cloned().collect(),
        }
    }

    /// Every circle (strongly connected component of two or more files),
    /// largest first.
    pub fn circles(&self) -> Vec<Circle> {
        let mut successors = vec![Vec::new(); self.files.len()];
        for &(from, to) in self.edges.keys() {
            successors[from].push(to);
        }
        let mut circles: Vec<Circle> = strongly_connected_components(&successors)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|component| {
                let members: BTreeSet<usize> = component.into_iter().collect();
                let mut files: Vec<PathBuf> = members
                    .iter()
                    .map(|&i| self.files[i].path.clone())
                    .collect();
                files.sort();
                let mut edges: Vec<Edge> = self
                    .edges
                    .iter()
                    .filter(|((from, to), _)| members.contains(from) && members.contains(to))
                    .map(|(&(from, to), names)| self.edge(from, to, names))
                    .collect();
                edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
                Circle { files, edges }
            })
            .collect();
        circles.sort_by(|a, b| {
            b.files
                .len()
                .cmp(&a.files.len())
                .then(a.files.cmp(&b.files))
        });
        circles
    }
}

/// Tarjan's algorithm over adjacency lists; every node is in exactly one
/// component.
pub fn strongly_connected_components(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        successors: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        lowlink: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.lowlink[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.successors[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.lowlink[v] = s.lowlink[v].min(s.lowlink[w]);
                }
                Some(iw) if s.on_stack[w] => s.lowlink[v] = s.lowlink[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.lowlink[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let n = successors.len();
    let mut s = State {
        successors,
        index: vec![None; n],
        lowlink: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}
