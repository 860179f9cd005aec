//! Rego rules of a policy group (`[groups.rego]`), evaluated by regorus's
//! bytecode interpreter (RVM).
//!
//! A group names one Rego module by its source; the module's package must
//! define `allow` (true when the evidence is acceptable) and may define
//! `deny`, a set of reason strings. The appraisal fails with one
//! [`Failure::RegoDenied`] per `deny` reason, or one saying `allow` is not
//! true when there is no reason. `deny` wins over `allow`: a module whose
//! `allow` is true and whose `deny` names a reason fails.
//!
//! Evaluation is pure and bounded: the module is compiled once when the
//! policy loads (a module that does not compile refuses the whole policy);
//! each evaluation runs the compiled program on a fresh VM with an
//! instruction budget (`max_instructions`) and no clock, network or file
//! builtins (regorus is built without them; `rand.intn`, the one
//! non-deterministic builtin left, is refused at load). A module that runs
//! out of budget or fails at run time fails the appraisal
//! ([`Failure::RegoError`]): fail closed.
//!
//! The input document is built by [`input`]; docs/policy.md describes it.

pub mod input;

use std::collections::BTreeSet;
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::VmError;
use regorus::rvm::RegoVM;

use super::{Failure, PolicyError};

/// Instructions one evaluation may run unless the group sets
/// `max_instructions`.
pub const DEFAULT_MAX_INSTRUCTIONS: u64 = 1_000_000;
/// The ceiling of `max_instructions`.
pub const MAX_INSTRUCTIONS_CEILING: u64 = 100_000_000;
/// The largest module source accepted.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
/// The deepest nesting of `(`, `[` and `{` accepted. regorus's parser
/// takes time exponential in the nesting of `{` and `[`, balanced or not
/// (measured: depth 12 ≈ 20–40 ms, 16 ≈ 0.3–0.6 s, 20 ≈ 4–9 s, 22 ≈ 44 s;
/// found by the `rego_module` fuzz target), and real policies nest a few
/// levels.
pub const MAX_NESTING: usize = 12;
/// The longest number literal accepted, in characters. regorus keeps
/// numbers as arbitrary-precision values, and a literal such as `1e62244444`
/// kept its parser busy past the fuzz target's 10 s limit.
pub const MAX_NUMBER_CHARS: usize = 64;
/// The largest exponent (either sign) a number literal may carry.
pub const MAX_NUMBER_EXPONENT: u64 = 400;
/// The longest run of minus signs accepted (whitespace and comments between
/// them count as part of the run). regorus's parser recurses through its
/// whole precedence chain once per unary minus: a run of ≈ 700 overflowed
/// a 2 MiB thread stack (≈ 200 in a debug build) and killed the process
/// (found by the `rego_module` fuzz target), and Rego has no use for more
/// than two in a row.
pub const MAX_MINUS_RUN: usize = 4;
/// The most digits a format verb's width or precision may have in a string
/// literal (`%9999d`). regorus's `sprintf` reads the width into a `u32`
/// that overflows (a panic in a build with overflow checks, a wrapped
/// width of up to 4 GiB of padding without them; found by the
/// `rego_module` fuzz target), pads numbers to it, and panics on a
/// non-ASCII digit there.
pub const MAX_FORMAT_WIDTH_DIGITS: usize = 4;
/// PCRs quoted for a group with Rego rules unless `quote_pcrs` says
/// otherwise: the platform PCRs 0–9 and 11–15 (PCR 10 is IMA's).
pub const DEFAULT_QUOTE_PCRS: [u8; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15];

/// The package of the generated entry module; a group's module may not use it.
const ENTRY_PACKAGE: &str = "writ_entry";
const ENTRY_RULE: &str = "data.writ_entry.decision";
/// Builtins refused at load: their results are not a function of the input.
const NON_DETERMINISTIC: [&str; 1] = ["rand.intn"];

/// `[groups.rego]` as written.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRego {
    /// The module's Rego source (Rego v1 syntax).
    source: String,
    /// PCRs to quote for the module (default [`DEFAULT_QUOTE_PCRS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quote_pcrs: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_instructions: Option<u64>,
    /// When the module reads IMA (PCR 10 quoted) and no `[groups.ima]`
    /// says otherwise: on the first appraisal of a boot, the list's
    /// `boot_aggregate` must match the event log (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_aggregate: Option<bool>,
}

#[cfg(feature = "fuzzing")]
impl RawRego {
    /// A module with the default settings and a small budget.
    pub(crate) fn fuzzing(source: &str) -> RawRego {
        RawRego {
            source: source.to_owned(),
            quote_pcrs: None,
            max_instructions: Some(100_000),
            boot_aggregate: None,
        }
    }
}

/// Why a group's Rego module was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegoLoadError {
    #[error("source is {actual} bytes, above the maximum {max}")]
    TooLarge { max: usize, actual: usize },
    #[error("brackets nest deeper than {max} (line {line})")]
    TooDeep { max: usize, line: usize },
    #[error(
        "a number literal is longer than {max_chars} characters or has an exponent beyond ±{max_exponent} (line {line})"
    )]
    NumberTooLarge {
        max_chars: usize,
        max_exponent: u64,
        line: usize,
    },
    #[error("more than {max} minus signs in a row (line {line})")]
    MinusRun { max: usize, line: usize },
    #[error("a format verb's width or precision has more than {max_digits} digits, or digits other than 0-9 (line {line})")]
    FormatWidth { max_digits: usize, line: usize },
    #[error("the module does not compile: {message}")]
    Compile { message: String },
    #[error("package {package} is not a plain dotted name under data (or is reserved)")]
    BadPackage { package: String },
    #[error("the module calls {builtin}, whose result does not depend on the input")]
    NonDeterministic { builtin: &'static str },
    #[error("quote_pcrs: PCR {pcr} is not a number from 0 to 23")]
    BadPcr { pcr: u8 },
    #[error("max_instructions is {actual}, outside 1..={max}")]
    BadBudget { max: u64, actual: u64 },
}

/// A group's compiled Rego module.
#[derive(Clone)]
pub struct RegoRules {
    /// The module's package, e.g. `writ.fleet` (without `data.`).
    pub package: String,
    pub source: String,
    pub quote_pcrs: BTreeSet<u8>,
    pub max_instructions: u64,
    pub boot_aggregate: bool,
    program: Arc<Program>,
}

impl std::fmt::Debug for RegoRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoRules")
            .field("package", &self.package)
            .field("source_bytes", &self.source.len())
            .field("quote_pcrs", &self.quote_pcrs)
            .field("max_instructions", &self.max_instructions)
            .field("boot_aggregate", &self.boot_aggregate)
            .finish_non_exhaustive()
    }
}

/// Two modules are the same rules when their source and settings are.
impl PartialEq for RegoRules {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && self.quote_pcrs == other.quote_pcrs
            && self.max_instructions == other.max_instructions
            && self.boot_aggregate == other.boot_aggregate
    }
}
impl Eq for RegoRules {}

impl serde::Serialize for RegoRules {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RegoRules", 5)?;
        st.serialize_field("package", &self.package)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("quote_pcrs", &self.quote_pcrs)?;
        st.serialize_field("max_instructions", &self.max_instructions)?;
        st.serialize_field("boot_aggregate", &self.boot_aggregate)?;
        st.end()
    }
}

/// What one evaluation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoVerdict {
    pub allow: bool,
    /// The module's `deny` reasons, sorted.
    pub deny: Vec<String>,
}

impl RegoVerdict {
    /// The appraisal failures of this verdict for `group` (none: it passes).
    pub fn failures(&self, group: &str, package: &str) -> Vec<Failure> {
        if !self.deny.is_empty() {
            return self
                .deny
                .iter()
                .map(|reason| Failure::RegoDenied {
                    group: group.to_owned(),
                    package: package.to_owned(),
                    reason: reason.clone(),
                })
                .collect();
        }
        if self.allow {
            return Vec::new();
        }
        vec![Failure::RegoDenied {
            group: group.to_owned(),
            package: package.to_owned(),
            reason: "allow is not true".into(),
        }]
    }
}

/// Why an evaluation gave no verdict (the appraisal fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegoEvalError {
    #[error("the module ran out of its budget of {limit} instructions")]
    Budget { limit: u64 },
    #[error("evaluation failed: {message}")]
    Runtime { message: String },
    #[error("allow is {actual}, not a boolean")]
    AllowNotBoolean { actual: String },
    #[error("deny holds {actual}, not a string")]
    DenyNotString { actual: String },
}

impl RegoRules {
    /// Compile `[groups.rego]` of `group`.
    pub(crate) fn load(group: &str, raw: &RawRego) -> Result<RegoRules, PolicyError> {
        let err = |reason: RegoLoadError| PolicyError::Rego {
            group: group.to_owned(),
            reason,
        };
        if raw.source.len() > MAX_SOURCE_BYTES {
            return Err(err(RegoLoadError::TooLarge {
                max: MAX_SOURCE_BYTES,
                actual: raw.source.len(),
            }));
        }
        if let Some(refusal) = lexical_limits(&raw.source) {
            return Err(err(refusal));
        }
        if let Some(builtin) = NON_DETERMINISTIC
            .into_iter()
            .find(|b| raw.source.contains(b))
        {
            return Err(err(RegoLoadError::NonDeterministic { builtin }));
        }
        let quote_pcrs: BTreeSet<u8> = match &raw.quote_pcrs {
            None => DEFAULT_QUOTE_PCRS.into_iter().collect(),
            Some(list) => {
                if let Some(&pcr) = list.iter().find(|p| **p > 23) {
                    return Err(err(RegoLoadError::BadPcr { pcr }));
                }
                list.iter().copied().collect()
            }
        };
        let max_instructions = raw.max_instructions.unwrap_or(DEFAULT_MAX_INSTRUCTIONS);
        if max_instructions == 0 || max_instructions > MAX_INSTRUCTIONS_CEILING {
            return Err(err(RegoLoadError::BadBudget {
                max: MAX_INSTRUCTIONS_CEILING,
                actual: max_instructions,
            }));
        }
        let compiled =
            std::panic::catch_unwind(|| compile(group, &raw.source)).unwrap_or_else(|_| {
                Err(RegoLoadError::Compile {
                    message: "the Rego compiler panicked on this module".into(),
                })
            });
        let (package, program) = compiled.map_err(err)?;
        Ok(RegoRules {
            package,
            source: raw.source.clone(),
            quote_pcrs,
            max_instructions,
            boot_aggregate: raw.boot_aggregate.unwrap_or(true),
            program,
        })
    }

    /// Run the module on `input` (built by [`input`]).
    pub fn evaluate(&self, input: serde_json::Value) -> Result<RegoVerdict, RegoEvalError> {
        // A panic inside the evaluator is a verdict-less evaluation, not a
        // crashed appraisal: fail closed with a typed error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(input))).unwrap_or_else(
            |_| {
                Err(RegoEvalError::Runtime {
                    message: "the evaluator panicked".into(),
                })
            },
        )
    }

    fn run(&self, input: serde_json::Value) -> Result<RegoVerdict, RegoEvalError> {
        let limit = usize::try_from(self.max_instructions).unwrap_or(usize::MAX);
        let mut vm = RegoVM::new();
        vm.set_execution_timer_config(None);
        vm.set_max_instructions(limit);
        // Suspendable mode keeps rule frames on the VM's own heap stack;
        // the default mode recurses natively per rule call, and a chain of
        // rules overflowed a thread's stack (regression test).
        vm.set_execution_mode(regorus::rvm::vm::ExecutionMode::Suspendable);
        vm.load_program(self.program.clone());
        vm.set_input(regorus::Value::from(input));
        let out = vm.execute().map_err(|e| match e {
            VmError::InstructionLimitExceeded { .. } => RegoEvalError::Budget {
                limit: self.max_instructions,
            },
            other => RegoEvalError::Runtime {
                message: other.to_string(),
            },
        })?;
        verdict(&out)
    }

    /// The failures of one evaluation: its verdict's, or one
    /// [`Failure::RegoError`] when it gave none.
    pub fn appraise(&self, group: &str, input: serde_json::Value) -> Vec<Failure> {
        match self.evaluate(input) {
            Ok(v) => v.failures(group, &self.package),
            Err(e) => vec![Failure::RegoError {
                group: group.to_owned(),
                package: self.package.clone(),
                reason: e.to_string(),
            }],
        }
    }
}

/// Compile the module with the generated entry module that gathers its
/// `allow` and `deny` into one decision.
fn compile(group: &str, source: &str) -> Result<(String, Arc<Program>), RegoLoadError> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    engine.set_gather_prints(false);
    let package = engine
        .add_policy(format!("{group}.rego"), source.to_owned())
        .map_err(compile_err)?;
    let package = plain_package(&package).ok_or_else(|| RegoLoadError::BadPackage {
        package: package.clone(),
    })?;
    let entry = format!(
        "package {ENTRY_PACKAGE}\n\
         default allow := false\n\
         allow if data.{package}.allow == true\n\
         deny contains reason if some reason in data.{package}.deny\n\
         decision := {{\"allow\": allow, \"deny\": deny}}\n"
    );
    engine
        .add_policy(format!("{ENTRY_PACKAGE}.rego"), entry)
        .map_err(compile_err)?;
    let rule: regorus::Rc<str> = regorus::Rc::from(ENTRY_RULE);
    let compiled = engine.compile_with_entrypoint(&rule).map_err(compile_err)?;
    let program = Compiler::compile_from_policy(&compiled, &[ENTRY_RULE]).map_err(compile_err)?;
    Ok((package, program))
}

/// The first lexical limit `source` breaks, outside string literals and
/// comments: brackets nesting deeper than [`MAX_NESTING`], or a number
/// literal longer than [`MAX_NUMBER_CHARS`] or with an exponent beyond
/// ±[`MAX_NUMBER_EXPONENT`], more than [`MAX_MINUS_RUN`] minus signs in a
/// row, or a format width in a string literal beyond
/// [`MAX_FORMAT_WIDTH_DIGITS`] digits.
fn lexical_limits(source: &str) -> Option<RegoLoadError> {
    let mut depth = 0usize;
    let mut minus_run = 0usize;
    let mut line = 1usize;
    let mut prev = ' ';
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' => {
                minus_run += 1;
                if minus_run > MAX_MINUS_RUN {
                    return Some(RegoLoadError::MinusRun {
                        max: MAX_MINUS_RUN,
                        line,
                    });
                }
            }
            ' ' | '\t' | '\r' | '\n' | '#' => {}
            _ => minus_run = 0,
        }
        match c {
            '\n' => line += 1,
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '`' => {
                if let Some(refusal) = string_literal(&mut chars, c, &mut line) {
                    return Some(refusal);
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(RegoLoadError::TooDeep {
                        max: MAX_NESTING,
                        line,
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '0'..='9' if !(prev.is_alphanumeric() || prev == '_') => {
                if let Some(refusal) = number_literal(&mut chars, line) {
                    return Some(refusal);
                }
            }
            _ => {}
        }
        prev = c;
    }
    None
}

/// Reads the rest of a string literal opened by `quote` (`"` with escapes,
/// ending at the line's end too; or a raw `` ` `` string), counting lines,
/// and refuses a format verb's width or precision (`%NNNs`, `%.NNNf`) of
/// more than [`MAX_FORMAT_WIDTH_DIGITS`] digits, or written with digits
/// other than ASCII ones.
fn string_literal(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
    line: &mut usize,
) -> Option<RegoLoadError> {
    while let Some(c) = chars.next() {
        match c {
            '\\' if quote == '"' => {
                chars.next();
            }
            '\n' => {
                *line += 1;
                if quote == '"' {
                    return None;
                }
            }
            '%' => {
                if chars.peek() == Some(&'.') {
                    chars.next();
                }
                let mut digits = 0usize;
                while let Some(d) = chars.next_if(|d| d.is_numeric()) {
                    digits += 1;
                    if !d.is_ascii_digit() || digits > MAX_FORMAT_WIDTH_DIGITS {
                        return Some(RegoLoadError::FormatWidth {
                            max_digits: MAX_FORMAT_WIDTH_DIGITS,
                            line: *line,
                        });
                    }
                }
            }
            c if c == quote => return None,
            _ => {}
        }
    }
    None
}

/// Reads the rest of a number literal whose first digit was just read and
/// refuses it if its length or exponent is beyond the limits.
fn number_literal(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: usize,
) -> Option<RegoLoadError> {
    let mut length = 1usize;
    while let Some(&c) = chars.peek() {
        if !(c.is_ascii_digit() || c == '.') {
            break;
        }
        length += 1;
        chars.next();
    }
    let mut exponent: u64 = 0;
    if matches!(chars.peek(), Some('e' | 'E')) {
        length += 1;
        chars.next();
        if matches!(chars.peek(), Some('+' | '-')) {
            length += 1;
            chars.next();
        }
        while let Some(&c) = chars.peek() {
            let Some(digit) = c.to_digit(10) else { break };
            exponent = exponent.saturating_mul(10).saturating_add(u64::from(digit));
            length += 1;
            chars.next();
        }
    }
    if length > MAX_NUMBER_CHARS || exponent > MAX_NUMBER_EXPONENT {
        return Some(RegoLoadError::NumberTooLarge {
            max_chars: MAX_NUMBER_CHARS,
            max_exponent: MAX_NUMBER_EXPONENT,
            line,
        });
    }
    None
}

fn compile_err<E: std::fmt::Display>(e: E) -> RegoLoadError {
    RegoLoadError::Compile {
        message: format!("{e:#}"),
    }
}

/// `data.a.b_c` → `a.b_c`, when every segment is an identifier and the
/// package is not the entry module's.
fn plain_package(package: &str) -> Option<String> {
    let rest = package.strip_prefix("data.")?;
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let ok = rest.split('.').all(ident)
        && rest != ENTRY_PACKAGE
        && !rest.starts_with(&format!("{ENTRY_PACKAGE}."));
    ok.then(|| rest.to_owned())
}

fn verdict(out: &regorus::Value) -> Result<RegoVerdict, RegoEvalError> {
    let allow = match &out["allow"] {
        regorus::Value::Bool(b) => *b,
        other => {
            return Err(RegoEvalError::AllowNotBoolean {
                actual: other.to_string(),
            })
        }
    };
    let mut deny = Vec::new();
    let reasons: Vec<regorus::Value> = match &out["deny"] {
        regorus::Value::Set(s) => s.iter().cloned().collect(),
        regorus::Value::Array(a) => a.iter().cloned().collect(),
        regorus::Value::Undefined => Vec::new(),
        other => {
            return Err(RegoEvalError::DenyNotString {
                actual: other.to_string(),
            })
        }
    };
    for r in reasons {
        match r {
            regorus::Value::String(s) => deny.push(s.to_string()),
            other => {
                return Err(RegoEvalError::DenyNotString {
                    actual: other.to_string(),
                })
            }
        }
    }
    deny.sort();
    Ok(RegoVerdict { allow, deny })
}

#[cfg(test)]
mod tests;
