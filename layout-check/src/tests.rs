//! The checks on synthetic source trees.

use std::path::{Path, PathBuf};

use super::*;

/// A temp `src/` tree with the given files.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn circles(files: &[(&str, &str)]) -> Vec<Circle> {
    let dir = tree(files);
    ImportGraph::from_src_dir(dir.path(), TestModules::Excluded)
        .unwrap()
        .circles()
}

fn edges(files: &[(&str, &str)]) -> Vec<(String, String, Vec<String>)> {
    let dir = tree(files);
    ImportGraph::from_src_dir(dir.path(), TestModules::Excluded)
        .unwrap()
        .edges()
        .into_iter()
        .map(|e| {
            (
                e.from.display().to_string(),
                e.to.display().to_string(),
                e.names,
            )
        })
        .collect()
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn a_two_file_circle_is_found_with_its_edges_and_names() {
    let found = circles(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::Bee;\npub struct Ay;\n"),
        ("b.rs", "pub struct Bee;\npub fn f(_: crate::a::Ay) {}\n"),
    ]);
    assert_eq!(found.len(), 1);
    let c = &found[0];
    assert_eq!(c.files, [p("a.rs"), p("b.rs")]);
    assert_eq!(
        c.edges,
        [
            Edge {
                from: p("a.rs"),
                to: p("b.rs"),
                names: vec!["Bee".to_owned()]
            },
            Edge {
                from: p("b.rs"),
                to: p("a.rs"),
                names: vec!["Ay".to_owned()]
            },
        ]
    );
    let shown = c.to_string();
    assert!(
        shown.starts_with("circle of 2 files: a.rs, b.rs\n"),
        "{shown}"
    );
    assert!(shown.contains("  a.rs -> b.rs: Bee\n"), "{shown}");
}

#[test]
fn a_dag_has_no_circle() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::b::B;\nuse crate::c::C;\n"),
        ("b.rs", "use crate::c::C;\npub struct B;\n"),
        ("c.rs", "pub struct C;\n"),
    ];
    assert!(circles(&files).is_empty());
    assert_eq!(edges(&files).len(), 3);
}

#[test]
fn super_resolves_relative_to_the_file_module() {
    // store/sqlite.rs is module store::sqlite: `super` is store (mod.rs),
    // `super::super` the crate root.
    let files = [
        ("lib.rs", "pub mod store;\npub struct Root;\n"),
        ("store/mod.rs", "pub mod sqlite;\npub struct Store;\n"),
        (
            "store/sqlite.rs",
            "use super::Store;\nfn f() -> super::super::Root { todo() }\n",
        ),
    ];
    assert_eq!(
        edges(&files),
        [
            (
                "store/sqlite.rs".to_owned(),
                "lib.rs".to_owned(),
                vec!["Root".to_owned()]
            ),
            (
                "store/sqlite.rs".to_owned(),
                "store/mod.rs".to_owned(),
                vec!["Store".to_owned()]
            ),
        ]
    );
    // store.rs instead of store/mod.rs: same module, same resolution.
    let files = [
        ("lib.rs", "pub mod store;\n"),
        (
            "store.rs",
            "pub mod sqlite;\nuse sqlite::Conn;\npub struct Store;\n",
        ),
        ("store/sqlite.rs", "use super::Store;\npub struct Conn;\n"),
    ];
    assert_eq!(
        edges(&files),
        [(
            "store/sqlite.rs".to_owned(),
            "store.rs".to_owned(),
            vec!["Store".to_owned()]
        )]
    );
}

#[test]
fn nested_mod_rs_files_resolve_to_the_deepest_module_file() {
    let files = [
        ("lib.rs", "pub mod api;\npub mod state;\n"),
        ("api/mod.rs", "pub mod v1;\n"),
        ("api/v1/mod.rs", "pub mod tokens;\n"),
        ("api/v1/tokens.rs", "use crate::state::AppState;\n"),
        (
            "state.rs",
            "use crate::api::v1::tokens::Router;\npub struct AppState;\n",
        ),
    ];
    assert_eq!(
        module_of(Path::new("api/v1/mod.rs")),
        Some(vec!["api".to_owned(), "v1".to_owned()])
    );
    assert_eq!(module_of(Path::new("main.rs")), Some(vec![]));
    assert_eq!(module_of(Path::new("bin/tool.rs")), None);
    let found = circles(&files);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].files, [p("api/v1/tokens.rs"), p("state.rs")]);
    assert_eq!(found[0].edges[1].names, ["Router"]);
}

#[test]
fn grouped_uses_make_one_edge_per_target_with_all_names() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "a.rs",
            "use crate::{b::{One, Two as Deux}, c::{self, *}};\nuse super::b::Three;\n",
        ),
        ("b.rs", ""),
        ("c.rs", ""),
    ];
    assert_eq!(
        edges(&files),
        [
            (
                "a.rs".to_owned(),
                "b.rs".to_owned(),
                vec!["One".to_owned(), "Three".to_owned(), "Two".to_owned()]
            ),
            (
                "a.rs".to_owned(),
                "c.rs".to_owned(),
                vec!["*".to_owned(), "c".to_owned()]
            ),
        ]
    );
}

#[test]
fn comments_and_string_literals_make_no_edges() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::B;\n"),
        (
            "b.rs",
            "// use crate::a::A;\n/* crate::a::A */\n/// see [`crate::a::A`]\n\
             pub fn f() -> &'static str { \"crate::a::A\" }\n\
             pub fn g() -> &'static str { r#\"use crate::a::A;\"# }\npub struct B;\n",
        ),
    ];
    assert!(circles(&files).is_empty());
    assert_eq!(edges(&files).len(), 1);
}

#[test]
fn test_modules_count_only_when_included() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b.rs",
            "pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::a::A;\n}\n",
        ),
    ];
    assert!(circles(&files).is_empty());
    let dir = tree(&files);
    let with_tests = ImportGraph::from_src_dir(dir.path(), TestModules::Included).unwrap();
    assert_eq!(with_tests.circles().len(), 1);
}

#[test]
fn three_file_circles_and_separate_components() {
    let files = [
        ("lib.rs", ""),
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "use crate::c::X;"),
        ("c.rs", "use crate::a::X;"),
        ("d.rs", "use crate::e::X;"),
        ("e.rs", "use crate::d::X; use crate::a::X;"),
    ];
    let found = circles(&files);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].files, [p("a.rs"), p("b.rs"), p("c.rs")]);
    assert_eq!(found[0].edges.len(), 3);
    assert_eq!(found[1].files, [p("d.rs"), p("e.rs")]);
}

#[test]
fn counted_lines_stop_at_the_test_module() {
    assert_eq!(counted_lines("a\nb\nc\n"), 3);
    assert_eq!(
        counted_lines("a\nb\n#[cfg(test)]\nmod tests {\n x\n y\n}\n"),
        2
    );
    // A cfg(test) function is not the test module; an attribute in between is fine.
    assert_eq!(counted_lines("a\n#[cfg(test)]\nfn f() {}\nb\n"), 4);
    assert_eq!(
        counted_lines("a\n#[cfg(test)]\n#[allow(clippy::x)]\npub(crate) mod tests;\n"),
        1
    );
}

#[test]
fn oversized_files_are_reported_with_counted_lines() {
    let long = "x\n".repeat(801);
    let long_with_tests = format!(
        "{}#[cfg(test)]\nmod tests {{\n{}}}\n",
        "x\n".repeat(800),
        long
    );
    let dir = tree(&[
        ("lib.rs", "pub mod big;\n"),
        ("big.rs", &long),
        ("fine.rs", &long_with_tests),
    ]);
    let over = oversized_files(dir.path(), 800).unwrap();
    assert_eq!(
        over,
        [OversizedFile {
            path: dir.path().join("big.rs"),
            lines: 801
        }]
    );
}

#[test]
fn workspace_members_come_from_the_root_manifest() {
    let dir = tree(&[(
        "Cargo.toml",
        "[workspace]\nmembers = [\"a\", \"b/c\"]\nexclude = [\"fuzz\"]\n",
    )]);
    assert_eq!(
        workspace_members(dir.path()).unwrap(),
        [dir.path().join("a"), dir.path().join("b/c")]
    );
    let dir = tree(&[("Cargo.toml", "[package]\nname = \"x\"\n")]);
    assert!(matches!(
        workspace_members(dir.path()),
        Err(LayoutError::NoMembers { .. })
    ));
}
