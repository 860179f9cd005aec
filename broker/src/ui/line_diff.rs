//! A line diff of two texts (consecutive policy versions on the policy
//! page): the longest common subsequence of their lines, with unchanged
//! runs away from a change folded into one gap line. Bounded: the part
//! that differs (after the common first and last lines) may span at most
//! [`MAX_CELLS`] line pairs.

/// Most line pairs compared (old lines × new lines of the part that
/// differs): 1 MiB of table.
pub const MAX_CELLS: usize = 1 << 18;
/// Unchanged lines kept on each side of a change.
pub const CONTEXT: usize = 2;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
    /// This many unchanged lines, not shown.
    Gap(usize),
}

/// Why no diff was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    #[error("the versions differ over too many lines to compare ({actual} line pairs, at most {expected})")]
    TooLarge { expected: usize, actual: usize },
}

/// The lines of `old` and `new`, compared.
pub fn diff(old: &str, new: &str) -> Result<Vec<DiffLine>, DiffError> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let cells = (am.len() + 1).saturating_mul(bm.len() + 1);
    if cells > MAX_CELLS {
        return Err(DiffError::TooLarge {
            expected: MAX_CELLS,
            actual: cells,
        });
    }
    // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
    let w = bm.len() + 1;
    let mut lcs = vec![0u32; cells];
    for i in (0..am.len()).rev() {
        for j in (0..bm.len()).rev() {
            lcs[i * w + j] = if am[i] == bm[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let mut all: Vec<DiffLine> = a[..prefix]
        .iter()
        .map(|l| DiffLine::Same((*l).to_owned()))
        .collect();
    let (mut i, mut j) = (0, 0);
    while i < am.len() || j < bm.len() {
        if i < am.len() && j < bm.len() && am[i] == bm[j] {
            all.push(DiffLine::Same(am[i].to_owned()));
            i += 1;
            j += 1;
        } else if i < am.len() && (j == bm.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            all.push(DiffLine::Removed(am[i].to_owned()));
            i += 1;
        } else {
            all.push(DiffLine::Added(bm[j].to_owned()));
            j += 1;
        }
    }
    all.extend(
        a[a.len() - suffix..]
            .iter()
            .map(|l| DiffLine::Same((*l).to_owned())),
    );
    Ok(fold(all))
}

/// Unchanged lines further than [`CONTEXT`] from any change become gaps.
fn fold(lines: Vec<DiffLine>) -> Vec<DiffLine> {
    let changed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !matches!(l, DiffLine::Same(_)))
        .map(|(i, _)| i)
        .collect();
    let near = |i: usize| {
        let k = changed.partition_point(|&c| c < i);
        let after = changed.get(k).is_some_and(|&c| c - i <= CONTEXT);
        let before = k > 0 && changed.get(k - 1).is_some_and(|&c| i - c <= CONTEXT);
        after || before
    };
    let mut out = Vec::new();
    let mut hidden = 0;
    for (i, line) in lines.into_iter().enumerate() {
        if matches!(line, DiffLine::Same(_)) && !near(i) {
            hidden += 1;
            continue;
        }
        if hidden > 0 {
            out.push(DiffLine::Gap(hidden));
            hidden = 0;
        }
        out.push(line);
    }
    if hidden > 0 {
        out.push(DiffLine::Gap(hidden));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(lines: &[DiffLine]) -> String {
        lines
            .iter()
            .map(|l| match l {
                DiffLine::Same(s) => format!(" {s}"),
                DiffLine::Added(s) => format!("+{s}"),
                DiffLine::Removed(s) => format!("-{s}"),
                DiffLine::Gap(n) => format!("~{n}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn changes_keep_two_lines_of_context_and_fold_the_rest() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni\n";
        assert_eq!(
            render(&diff(old, new).unwrap()),
            "~2\n c\n d\n-e\n+E\n f\n g\n h\n+i"
        );
        assert_eq!(render(&diff("x\ny\n", "x\ny\n").unwrap()), "~2");
        assert_eq!(render(&diff("", "p\n").unwrap()), "+p");
        assert_eq!(render(&diff("p\n", "").unwrap()), "-p");
    }

    #[test]
    fn a_moved_line_is_one_removal_and_one_addition() {
        let d = diff("1\n2\n3\n", "2\n3\n1\n").unwrap();
        assert_eq!(render(&d), "-1\n 2\n 3\n+1");
    }

    #[test]
    fn too_many_differing_lines_is_a_typed_error() {
        let old: String = (0..600).map(|i| format!("o{i}\n")).collect();
        let new: String = (0..600).map(|i| format!("n{i}\n")).collect();
        assert_eq!(
            diff(&old, &new).unwrap_err(),
            DiffError::TooLarge {
                expected: MAX_CELLS,
                actual: 601 * 601
            }
        );
        // The same sizes with one changed line are fine: only the part
        // that differs counts.
        let one = old.replacen("o300\n", "x\n", 1);
        assert_eq!(diff(&old, &one).unwrap().len(), 2 + 2 * CONTEXT + 2);
    }
}
