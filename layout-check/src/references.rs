//! Module-relative paths a source file refers to: `use crate::…`,
//! `use super::…` (grouped too) and `crate::…`/`super::…` paths in code,
//! each made absolute (from the crate root) using the module the reference
//! sits in — the file's module, or an inline `mod x { }` inside it.
//!
//! A parent naming its own child (`self::x::…`, `x::…`) is not collected:
//! a `mod.rs` that re-exports and routes to its children while they use
//! its shared types via `super::` is the normal layout, not a circle.

use crate::tokens::{tokenize, Token};

/// One reference, resolved to an absolute path from the crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Absolute path segments (no `crate`), e.g. `["store", "Store"]`; a
    /// glob import ends in `"*"`.
    pub path: Vec<String>,
    /// Whether the reference sits in a `#[cfg(test)]` inline module.
    pub in_test_module: bool,
}

/// The references in `source`, a file whose module is `module`.
pub fn references(source: &str, module: &[String]) -> Vec<Reference> {
    let tokens = tokenize(source);
    let mut scan = Scan {
        tokens: &tokens,
        at: 0,
        depth: 0,
        inline: Vec::new(),
        file_module: module,
        pending_cfg_test: false,
        out: Vec::new(),
    };
    scan.run();
    scan.out
}

/// An inline module being scanned.
struct Inline {
    name: String,
    /// Brace depth inside its `{`.
    depth: usize,
    test: bool,
}

struct Scan<'a> {
    tokens: &'a [Token],
    at: usize,
    depth: usize,
    inline: Vec<Inline>,
    file_module: &'a [String],
    pending_cfg_test: bool,
    out: Vec<Reference>,
}

fn is(token: Option<&Token>, ident: &str) -> bool {
    matches!(token, Some(Token::Ident(s)) if s == ident)
}

impl<'a> Scan<'a> {
    fn peek(&self, ahead: usize) -> Option<&'a Token> {
        self.tokens.get(self.at + ahead)
    }

    fn current_module(&self) -> Vec<String> {
        let mut m = self.file_module.to_vec();
        m.extend(self.inline.iter().map(|i| i.name.clone()));
        m
    }

    fn in_test(&self) -> bool {
        self.inline.iter().any(|i| i.test)
    }

    fn run(&mut self) {
        while let Some(token) = self.peek(0) {
            match token {
                Token::Punct('#') if self.cfg_test_attribute() => {
                    self.pending_cfg_test = true;
                    self.at += 7;
                }
                Token::Punct('{') => {
                    self.depth += 1;
                    self.pending_cfg_test = false;
                    self.at += 1;
                }
                Token::Punct('}') => {
                    if self.inline.last().is_some_and(|i| i.depth == self.depth) {
                        self.inline.pop();
                    }
                    self.depth = self.depth.saturating_sub(1);
                    self.pending_cfg_test = false;
                    self.at += 1;
                }
                Token::Punct(';') => {
                    self.pending_cfg_test = false;
                    self.at += 1;
                }
                Token::Ident(s) if s == "mod" => self.module_item(),
                Token::Ident(s) if s == "use" => {
                    self.at += 1;
                    let paths = self.use_tree(Vec::new());
                    for path in paths {
                        self.record(path);
                    }
                }
                Token::Ident(s) if (s == "crate" || s == "super") && self.starts_inline_path() => {
                    let path = self.inline_path();
                    self.record(path);
                }
                _ => self.at += 1,
            }
        }
    }

    /// `# [ cfg ( test ) ]` at the cursor.
    fn cfg_test_attribute(&self) -> bool {
        matches!(self.peek(1), Some(Token::Punct('[')))
            && is(self.peek(2), "cfg")
            && matches!(self.peek(3), Some(Token::Punct('(')))
            && is(self.peek(4), "test")
            && matches!(self.peek(5), Some(Token::Punct(')')))
            && matches!(self.peek(6), Some(Token::Punct(']')))
    }

    /// `mod name {` opens an inline module; `mod name;` is another file.
    fn module_item(&mut self) {
        if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) = (self.peek(1), self.peek(2)) {
            self.depth += 1;
            self.inline.push(Inline {
                name: name.clone(),
                depth: self.depth,
                test: self.pending_cfg_test,
            });
            self.pending_cfg_test = false;
            self.at += 3;
        } else {
            self.at += 1;
        }
    }

    /// `crate::` or `super::` that is a path of its own: not the tail of
    /// another path, not a visibility (`pub(crate)`, `pub(in crate::x)`).
    fn starts_inline_path(&self) -> bool {
        if !matches!(self.peek(1), Some(Token::PathSep)) {
            return false;
        }
        let before = self.at.checked_sub(1).and_then(|i| self.tokens.get(i));
        !matches!(before, Some(Token::PathSep | Token::Punct('.'))) && !is(before, "in")
    }

    /// `crate::a::b::C` (stops before generics, method calls and the like).
    fn inline_path(&mut self) -> Vec<String> {
        let mut path = Vec::new();
        while let Some(Token::Ident(s)) = self.peek(0) {
            path.push(s.clone());
            self.at += 1;
            match (self.peek(0), self.peek(1)) {
                (Some(Token::PathSep), Some(Token::Ident(_))) => self.at += 1,
                _ => break,
            }
        }
        path
    }

    /// A use tree after `use` or inside a group: every leaf as a full path
    /// (`prefix` plus its own segments). Leaves the cursor after the tree.
    fn use_tree(&mut self, prefix: Vec<String>) -> Vec<Vec<String>> {
        let mut path = prefix;
        loop {
            match self.peek(0) {
                Some(Token::PathSep) => self.at += 1,
                Some(Token::Ident(s)) => {
                    path.push(s.clone());
                    self.at += 1;
                    if is(self.peek(0), "as") {
                        self.at += 2;
                    }
                    if !matches!(self.peek(0), Some(Token::PathSep)) {
                        return vec![path];
                    }
                }
                Some(Token::Punct('*')) => {
                    self.at += 1;
                    path.push("*".to_owned());
                    return vec![path];
                }
                Some(Token::Punct('{')) => {
                    self.at += 1;
                    return self.use_group(&path);
                }
                _ => return vec![path],
            }
        }
    }

    /// The trees of `{ a, b::c, {d, e} }` up to and including the `}`.
    fn use_group(&mut self, prefix: &[String]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        loop {
            match self.peek(0) {
                None => return out,
                Some(Token::Punct('}')) => {
                    self.at += 1;
                    return out;
                }
                Some(Token::Punct(',')) => self.at += 1,
                Some(Token::Ident(_) | Token::PathSep | Token::Punct('*' | '{')) => {
                    out.extend(self.use_tree(prefix.to_vec()));
                }
                Some(_) => self.at += 1,
            }
        }
    }

    /// Makes `path` absolute and keeps it if it stays inside the crate.
    fn record(&mut self, path: Vec<String>) {
        let mut module = self.current_module();
        let mut segments = path.into_iter().peekable();
        match segments.peek().map(String::as_str) {
            Some("crate") => {
                segments.next();
                module.clear();
            }
            Some("super") => {
                while segments.peek().map(String::as_str) == Some("super") {
                    segments.next();
                    if module.pop().is_none() {
                        return;
                    }
                }
            }
            _ => return,
        }
        // `a::{self, b}`: `self` names the prefix itself.
        module.extend(segments.filter(|s| s != "self"));
        self.out.push(Reference {
            path: module,
            in_test_module: self.in_test(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(source: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        references(source, &module)
            .into_iter()
            .map(|r| {
                let p = r.path.join("::");
                if r.in_test_module {
                    format!("test:{p}")
                } else {
                    p
                }
            })
            .collect()
    }

    #[test]
    fn use_items_and_inline_paths() {
        let src = "
            use crate::a::B;
            use super::c as d;
            use crate::{e::F, g, h::{self, i::*}};
            pub(crate) fn f() -> crate::j::K { crate::l::m::<u8>(super::n::O) }
            pub(in crate::p) struct Q;
            use std::io::Read;
            fn g() { x::crate_like::y(); }
        ";
        assert_eq!(
            paths(src, &["top", "mid"]),
            [
                "a::B",
                "top::c",
                "e::F",
                "g",
                "h",
                "h::i::*",
                "j::K",
                "l::m",
                "top::n::O"
            ]
        );
    }

    #[test]
    fn inline_modules_shift_super_and_cfg_test_is_marked() {
        let src = "
            mod inner { use super::x::Y; fn f() { super::super::z(); } }
            use super::after;
            #[cfg(test)]
            mod tests { use super::*; use crate::w; }
        ";
        assert_eq!(
            paths(src, &["a", "b"]),
            ["a::b::x::Y", "a::z", "a::after", "test:a::b::*", "test:w"]
        );
    }

    #[test]
    fn super_above_the_root_is_dropped() {
        assert!(paths("use super::x;", &[]).is_empty());
    }
}
