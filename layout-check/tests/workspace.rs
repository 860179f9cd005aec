//! The workspace's own layout: no import circle between the files of the
//! service crates, no source file over 800 lines (test modules excluded).

use std::path::{Path, PathBuf};

use layout_check::{oversized_files, workspace_members, ImportGraph, TestModules};

/// Crates whose files must not import from each other in a circle.
const ACYCLIC_CRATES: [&str; 4] = ["broker", "attester", "gate", "loadgen"];

/// The most lines a module may have before its `#[cfg(test)]` module.
const MAX_MODULE_LINES: usize = 800;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

#[test]
fn service_crates_have_no_import_circle() {
    let root = workspace_root();
    let members = workspace_members(&root).unwrap();
    let mut report = String::new();
    let mut checked = Vec::new();
    for name in ACYCLIC_CRATES {
        let dir = root.join(name);
        if !members.contains(&dir) {
            // `gate` is checked once it is a workspace member.
            continue;
        }
        let graph = ImportGraph::from_src_dir(&dir.join("src"), TestModules::Excluded).unwrap();
        assert!(graph.files().len() > 1, "{name}: no source files found");
        checked.push(name);
        for circle in graph.circles() {
            report.push_str(&format!("{name}: {circle}"));
        }
    }
    assert!(
        checked.contains(&"broker") && checked.contains(&"attester"),
        "checked only {checked:?}"
    );
    assert!(report.is_empty(), "import circles:\n{report}");
}

#[test]
fn no_module_is_over_the_line_limit() {
    let root = workspace_root();
    let mut report = String::new();
    let members = workspace_members(&root).unwrap();
    assert!(!members.is_empty());
    for member in members {
        for file in oversized_files(&member.join("src"), MAX_MODULE_LINES).unwrap() {
            let shown = file.path.strip_prefix(&root).unwrap_or(&file.path);
            report.push_str(&format!("  {}: {} lines\n", shown.display(), file.lines));
        }
    }
    assert!(
        report.is_empty(),
        "files over {MAX_MODULE_LINES} lines (before their test module):\n{report}"
    );
}
