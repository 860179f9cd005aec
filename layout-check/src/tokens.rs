//! A small Rust lexer: enough to find paths and `use`/`mod` items while
//! skipping comments, string/char literals and lifetimes.

/// One token of Rust source, as far as path scanning cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// An identifier or keyword (raw identifiers without their `r#`).
    Ident(String),
    /// `::`
    PathSep,
    /// Any other punctuation character.
    Punct(char),
    /// A string, char or number literal (its content does not matter).
    Literal,
}

/// Splits `source` into tokens; comments and whitespace are dropped and
/// literals become [`Token::Literal`]. Never fails: unterminated comments or
/// literals simply run to the end of the text.
pub(crate) fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        at: 0,
        out: Vec::new(),
    };
    lexer.run();
    lexer.out
}

struct Lexer<'a> {
    chars: &'a [char],
    at: usize,
    out: Vec<Token>,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                c if c.is_whitespace() => self.at += 1,
                '/' if self.peek(1) == Some('/') => self.line_comment(),
                '/' if self.peek(1) == Some('*') => self.block_comment(),
                '"' => {
                    self.at += 1;
                    self.quoted('"');
                }
                '\'' => self.quote_or_lifetime(),
                ':' if self.peek(1) == Some(':') => {
                    self.at += 2;
                    self.out.push(Token::PathSep);
                }
                c if c.is_ascii_digit() => self.number(),
                'b' | 'r' | 'c' if self.prefixed_literal() => {}
                c if is_ident_start(c) => self.ident(),
                c => {
                    self.at += 1;
                    self.out.push(Token::Punct(c));
                }
            }
        }
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                break;
            }
            self.at += 1;
        }
    }

    /// Block comments nest in Rust.
    fn block_comment(&mut self) {
        self.at += 2;
        let mut depth = 1usize;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (None, _) => return,
                (Some('/'), Some('*')) => {
                    depth += 1;
                    self.at += 2;
                }
                (Some('*'), Some('/')) => {
                    depth -= 1;
                    self.at += 2;
                }
                _ => self.at += 1,
            }
        }
    }

    /// The rest of a string or char literal whose opening quote was consumed.
    fn quoted(&mut self, close: char) {
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if c == '\\' {
                self.at += 1;
            } else if c == close {
                break;
            }
        }
        self.out.push(Token::Literal);
    }

    /// `'a'`, `'\n'`, `'\u{1F600}'` are chars; `'a` and `'static` are lifetimes.
    fn quote_or_lifetime(&mut self) {
        match (self.peek(1), self.peek(2)) {
            (Some('\\'), _) => {
                self.at += 1;
                self.quoted('\'');
            }
            (Some(_), Some('\'')) => {
                self.at += 3;
                self.out.push(Token::Literal);
            }
            (Some(c), _) if is_ident_start(c) => {
                self.at += 1;
                while self.peek(0).is_some_and(is_ident_continue) {
                    self.at += 1;
                }
            }
            _ => {
                self.at += 1;
                self.out.push(Token::Punct('\''));
            }
        }
    }

    fn number(&mut self) {
        while self.peek(0).is_some_and(is_ident_continue) {
            self.at += 1;
        }
        self.out.push(Token::Literal);
    }

    fn ident(&mut self) {
        let start = self.at;
        while self.peek(0).is_some_and(is_ident_continue) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        self.out.push(Token::Ident(text));
    }

    /// `b"…"`, `b'…'`, `c"…"`, `r"…"`, `r#"…"#`, `br#"…"#`, `cr"…"` and raw
    /// identifiers `r#name`. Returns false (consuming nothing) for anything else.
    fn prefixed_literal(&mut self) -> bool {
        let mut ahead = 0;
        let first = self.peek(0);
        if matches!(first, Some('b') | Some('c')) {
            ahead = 1;
            match self.peek(1) {
                Some('"') => {
                    self.at += 2;
                    self.quoted('"');
                    return true;
                }
                Some('\'') if first == Some('b') => {
                    self.at += 2;
                    self.quoted('\'');
                    return true;
                }
                _ => {}
            }
        }
        if self.peek(ahead) != Some('r') {
            return false;
        }
        let mut hashes = 0;
        while self.peek(ahead + 1 + hashes) == Some('#') {
            hashes += 1;
        }
        match self.peek(ahead + 1 + hashes) {
            Some('"') => {
                self.at += ahead + 2 + hashes;
                self.raw_string(hashes);
                true
            }
            Some(c) if ahead == 0 && hashes == 1 && is_ident_start(c) => {
                self.at += 2;
                self.ident();
                true
            }
            _ => false,
        }
    }

    /// The rest of a raw string: up to `"` followed by `hashes` `#`s.
    fn raw_string(&mut self, hashes: usize) {
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if c == '"' && (0..hashes).all(|i| self.peek(i) == Some('#')) {
                self.at += hashes;
                break;
            }
        }
        self.out.push(Token::Literal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        tokenize(src)
            .into_iter()
            .filter_map(|t| match t {
                Token::Ident(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn comments_strings_chars_and_lifetimes_hide_their_content() {
        let src = r####"
            // crate::a
            /* crate::b /* nested crate::c */ still crate::d */
            let s = "crate::e \" crate::f";
            let r = r#"crate::g " crate::h"#;
            let b = br##"crate::i"#crate::j"##;
            let c = '"'; let d = '\''; let e = b'x';
            fn f<'a>(x: &'a str) -> &'static str { keep }
        "####;
        assert_eq!(
            idents(src),
            [
                "let", "s", "let", "r", "let", "b", "let", "c", "let", "d", "let", "e", "fn", "f",
                "x", "str", "str", "keep"
            ]
        );
    }

    #[test]
    fn path_separators_and_raw_identifiers() {
        let t = tokenize("crate::r#type::X");
        assert_eq!(
            t,
            [
                Token::Ident("crate".into()),
                Token::PathSep,
                Token::Ident("type".into()),
                Token::PathSep,
                Token::Ident("X".into()),
            ]
        );
    }
}
