//! Markdown for review comments (a plan or a drift report posted on a pull request):
//! a marker CI can find the comment by, a heading, a summary, a table by cluster, one
//! block per object, and a size budget the whole comment stays under.
//!
//! Only presentation: what goes in each part was decided before. The budget never cuts a
//! block (a code block, a `<details>`), it leaves whole blocks out and says how many.

/// The default `--max-bytes`: under GitHub's 65,536-character comment limit, with room
/// for what CI adds around it.
pub const DEFAULT_MAX_BYTES: usize = 60_000;

/// One review comment, in parts.
#[derive(Debug, Clone, Default)]
pub struct Review {
    /// `plan` or `drift`: the marker is `<!-- dcm:<kind>:<project> -->`.
    pub kind: &'static str,
    /// The project's name (safe in an HTML comment: no `--`, no `>`).
    pub project: String,
    /// The summary paragraph (Markdown).
    pub summary: String,
    /// The table by cluster; none when there is nothing to count.
    pub table: Option<Table>,
    /// One entry per object, in order.
    pub items: Vec<Item>,
    /// What a reader does to see everything, when something is left out (Markdown).
    pub full_hint: String,
    /// How an item is called in the "not shown" line (`change`, `object`).
    pub noun: &'static str,
}

/// A table: a header row and rows of cells (Markdown, no `|`).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    /// Which columns are numbers (right-aligned).
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A count table by cluster × category from `(address, category)` pairs: one row per
    /// cluster (the address's first part), one column per category that occurs (named by
    /// `name`), and a bold total row when there are several clusters.
    pub fn counts<K: Ord + Copy>(
        entries: impl IntoIterator<Item = (String, K)>,
        name: impl Fn(K) -> String,
    ) -> Table {
        use std::collections::{BTreeMap, BTreeSet};
        let mut counts: BTreeMap<String, BTreeMap<K, usize>> = BTreeMap::new();
        let mut totals: BTreeMap<K, usize> = BTreeMap::new();
        for (address, k) in entries {
            let cluster = address.split('/').next().unwrap_or_default().to_string();
            *counts.entry(cluster).or_default().entry(k).or_default() += 1;
            *totals.entry(k).or_default() += 1;
        }
        let columns: BTreeSet<K> = totals.keys().copied().collect();
        let mut header = vec!["cluster".to_string()];
        header.extend(columns.iter().map(|k| name(*k)));
        let count = |n: &BTreeMap<K, usize>, k: &K| n.get(k).copied().unwrap_or_default();
        let mut rows: Vec<Vec<String>> = counts
            .iter()
            .map(|(cluster, n)| {
                let mut row = vec![format!("`{cluster}`")];
                row.extend(columns.iter().map(|k| count(n, k).to_string()));
                row
            })
            .collect();
        if counts.len() > 1 {
            let mut row = vec!["**all**".to_string()];
            row.extend(columns.iter().map(|k| format!("**{}**", count(&totals, k))));
            rows.push(row);
        }
        Table {
            numeric: (0..header.len()).map(|i| i > 0).collect(),
            header,
            rows,
        }
    }
}

/// One object: the whole block (a `<details>` with its diff, or one line), and the one
/// line that stands for it when the block does not fit.
#[derive(Debug, Clone)]
pub struct Item {
    pub full: String,
    pub line: String,
}

/// The budget cannot hold even the heading, the summary and the "not shown" line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--max-bytes {max} is too small: the heading, the summary and the note on what is left out need {needed} bytes")]
pub struct TooSmall {
    pub max: usize,
    pub needed: usize,
}

/// `<`, `>`, `&` as HTML entities (for text inside HTML tags).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text for a Markdown paragraph: its code spans (`` `dcm import ADDRESS` ``) kept as
/// they are; elsewhere HTML and the characters that start emphasis, links or code
/// escaped, so a note reads as it is written.
pub fn escape_text(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    let mut out = String::with_capacity(text.len());
    let parts: Vec<&str> = text.split('`').collect();
    // Odd parts are inside backticks, when the backticks pair up.
    let paired = parts.len() % 2 == 1;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(if paired { "`" } else { "\\`" });
        }
        if paired && i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        for c in part.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '\\' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    out
}

/// Text for inside a code span (between backticks): backticks and line breaks, which
/// would end it or the line, become `'` and spaces.
pub fn code_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

/// A fenced code block of `lang` holding `lines`, with a fence longer than any run of
/// backticks in them, so no line can end the block early.
pub fn code_block(lang: &str, lines: &[String]) -> String {
    let longest = lines
        .iter()
        .map(|l| {
            l.split(|c| c != '`')
                .map(str::len)
                .max()
                .unwrap_or_default()
        })
        .max()
        .unwrap_or_default();
    let fence = "`".repeat(longest.max(2) + 1);
    let mut out = format!("{fence}{lang}\n");
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// A `<details>` block: `summary` (HTML), then `body` (Markdown).
pub fn details(summary: &str, body: &str) -> String {
    format!("<details><summary>{summary}</summary>\n\n{body}\n</details>\n\n")
}

fn render_table(t: &Table) -> String {
    let mut out = format!("| {} |\n|", t.header.join(" | "));
    for i in 0..t.header.len() {
        out.push_str(if t.numeric.get(i).copied().unwrap_or(false) {
            "---:|"
        } else {
            "---|"
        });
    }
    out.push('\n');
    for row in &t.rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out.push('\n');
    out
}

/// `word`, plural unless `n` is 1.
fn noun(n: usize, word: &str) -> String {
    format!("{word}{}", if n == 1 { "" } else { "s" })
}

/// The line that ends a comment that left something out: how many objects are not shown
/// at all, how many are shown without their diff, and whether the table was left out.
fn tail(r: &Review, hidden: usize, shortened: usize, no_table: bool) -> String {
    let mut parts = Vec::new();
    if hidden > 0 {
        parts.push(format!("{hidden} more {} not shown", noun(hidden, r.noun)));
    }
    if shortened > 0 {
        parts.push(format!(
            "the diffs of {shortened} {} not shown",
            noun(shortened, r.noun)
        ));
    }
    if no_table {
        parts.push("the table by cluster not shown".to_string());
    }
    format!("**… {}.** {}\n", parts.join("; "), r.full_hint)
}

/// The comment, whole when it fits in `max_bytes`; otherwise the heading, the summary,
/// the table, as many whole blocks as fit (then one line per object while those fit)
/// and a line saying what was left out and where to see it. Never more than
/// `max_bytes` bytes.
pub fn fit(r: &Review, max_bytes: usize) -> Result<String, TooSmall> {
    let mut head = format!("<!-- dcm:{}:{} -->\n", r.kind, r.project);
    head.push_str(&format!("### dcm {}: `{}`\n\n", r.kind, r.project));
    head.push_str(&r.summary);
    head.push_str("\n\n");
    let table = r.table.as_ref().map(render_table).unwrap_or_default();
    let whole: usize =
        head.len() + table.len() + r.items.iter().map(|i| i.full.len()).sum::<usize>();
    if whole <= max_bytes {
        let mut out = head;
        out.push_str(&table);
        for i in &r.items {
            out.push_str(&i.full);
        }
        return Ok(out);
    }
    // The longest "not shown" line this comment can need.
    let n = r.items.len();
    let reserve = tail(r, n, n, true).len() + 1;
    if head.len() + reserve > max_bytes {
        return Err(TooSmall {
            max: max_bytes,
            needed: head.len() + reserve,
        });
    }
    let mut out = head;
    let no_table = out.len() + table.len() + reserve > max_bytes;
    if !no_table {
        out.push_str(&table);
    }
    let (mut shown, mut shortened, mut whole_blocks) = (0, 0, true);
    for i in &r.items {
        if whole_blocks && out.len() + i.full.len() + reserve <= max_bytes {
            out.push_str(&i.full);
        } else if out.len() + i.line.len() + reserve <= max_bytes {
            whole_blocks = false;
            out.push_str(&i.line);
            if i.line != i.full {
                shortened += 1;
            }
        } else {
            break;
        }
        shown += 1;
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&tail(
        r,
        n - shown,
        shortened,
        no_table && r.table.is_some(),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(items: usize) -> Review {
        Review {
            kind: "plan",
            project: "shop".into(),
            summary: "**Plan: 1 to add.**".into(),
            table: Some(Table {
                header: vec!["cluster".into(), "create".into()],
                numeric: vec![false, true],
                rows: vec![vec!["`c1`".into(), items.to_string()]],
            }),
            items: (0..items)
                .map(|i| Item {
                    full: details(
                        &format!("<code>c1/core/ConfigMap/a/x{i}</code> will be created"),
                        &code_block("diff", &[format!("+  k: v{i}")]),
                    ),
                    line: format!("- `c1/core/ConfigMap/a/x{i}` will be created\n"),
                })
                .collect(),
            full_hint: "The full plan: `dcm show plan.json`.".into(),
            noun: "change",
        }
    }

    #[test]
    fn a_comment_that_fits_is_whole_and_marked() {
        let out = fit(&review(3), DEFAULT_MAX_BYTES).unwrap();
        assert!(out.starts_with("<!-- dcm:plan:shop -->\n### dcm plan: `shop`\n"));
        assert_eq!(out.matches("<details>").count(), 3);
        assert!(!out.contains("not shown"), "{out}");
    }

    #[test]
    fn a_long_comment_stays_under_the_budget_in_whole_blocks() {
        let r = review(500);
        for max in [400, 1000, 5000, 20_000] {
            let out = fit(&r, max).unwrap();
            assert!(out.len() <= max, "{} > {max}", out.len());
            assert_eq!(
                out.matches("<details>").count(),
                out.matches("</details>").count()
            );
            assert_eq!(out.matches("```").count() % 2, 0, "{out}");
            assert!(out.contains("more changes not shown"), "{out}");
            assert!(out.contains("`dcm show plan.json`"), "{out}");
        }
        // A small budget leaves the summary, the table and a few lines.
        let small = fit(&r, 330).unwrap();
        assert!(
            !small.contains("<details>") && small.contains("| `c1` | 500 |"),
            "{small}"
        );
        assert!(
            small.contains("- `c1/core/ConfigMap/a/x0` will be created\n"),
            "{small}"
        );
        let hidden = small.matches("- `c1/").count();
        assert!(
            small.contains(&format!("{} more changes not shown", 500 - hidden)),
            "{small}"
        );
        assert_eq!(
            fit(&r, 100),
            Err(TooSmall {
                max: 100,
                needed: fit(&r, 100).unwrap_err().needed
            })
        );
    }

    #[test]
    fn notes_keep_their_code_spans_and_lose_their_markup() {
        assert_eq!(
            escape_text("run `dcm import a/b_c` for <x> [[y]]"),
            "run `dcm import a/b_c` for &lt;x&gt; \\[\\[y\\]\\]"
        );
        assert_eq!(escape_text("a ` b_c"), "a \\` b\\_c");
    }

    #[test]
    fn no_line_of_a_diff_closes_its_code_block() {
        let block = code_block("diff", &["+ a: ```x".to_string(), "+ b: ````".to_string()]);
        assert!(
            block.starts_with("`````diff\n") && block.ends_with("\n`````\n"),
            "{block}"
        );
    }
}
