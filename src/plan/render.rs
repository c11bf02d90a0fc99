//! Renders a plan for people (text, Markdown) and programs (JSON). Only presentation:
//! every decision was made when the plan was built. Output is deterministic: the same
//! plan renders to the same bytes.

use super::{Action, Change, Plan};
use crate::output::Style;

fn headline(c: &Change) -> String {
    let what = match (c.action, c.record) {
        (Action::Create, _) => "will be created",
        (Action::Update, _) => "will be updated in place",
        (Action::Delete, _) => "will be destroyed",
        (Action::Forget, _) => "will be removed from the state (it stays in the cluster)",
        (Action::NoOp, _) => "already matches; it will be recorded in the state",
        (Action::Refuse, _) => "exists and is not dcm's to change: apply refuses this plan",
    };
    format!("{} {what}", c.address)
}

/// One diff line as a terminal shows it: `+` green, `-` red, hunk headers cyan.
pub fn paint_diff_line(l: &crate::diff::DiffLine, style: Style) -> String {
    paint_line(l.tag, &l.text, style)
}

/// [`paint_diff_line`], from a line's tag and text.
fn paint_line(tag: char, text: &str, style: Style) -> String {
    let line = format!("{tag} {text}");
    match tag {
        '+' => style.green(&line),
        '-' => style.red(&line),
        '@' => style.cyan(text),
        _ => line,
    }
}

/// The summary line pinned by the design: `Plan: X to add, Y to change, Z to destroy.`
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    format!(
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    )
}

/// Objects that stop the plan from being applied, as one line; None when there are none.
pub fn refused_line(plan: &Plan) -> Option<String> {
    let n = plan.summary.refused;
    (n > 0).then(|| {
        format!(
            "Refused: {n} object{} that dcm does not own; apply changes nothing until {} imported or taken over.",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it is" } else { "they are" }
        )
    })
}

fn state_only_line(plan: &Plan) -> Option<String> {
    let n = plan.summary.state_only;
    (n > 0).then(|| {
        format!(
            "State only: {n} object{} recorded or forgotten without touching a cluster.",
            if n == 1 { "" } else { "s" }
        )
    })
}

/// The plan as text for a terminal or a CI log.
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(plan, style, &mut out);
    out
}

/// Prints [`text`] to standard output as it is rendered.
pub fn print_text(plan: &Plan, style: Style) {
    // A closed standard output stops the rendering; nothing else can fail.
    let _ = write_text(plan, style, &mut crate::output::OutChunks::default());
}

/// Prints [`json`] to standard output as it is rendered.
pub fn print_json(plan: &Plan) {
    use std::io::Write;
    let mut out = crate::output::OutChunks::default();
    // Only a closed standard output fails here: serializing a plan cannot.
    if serde_json::to_writer_pretty(&mut out, plan).is_ok() {
        let _ = out.write_all(b"\n");
    }
}

/// [`text`], written piece by piece to `out`, so a plan of 100k objects is never held
/// as one string (each diff is rendered as it is written).
pub fn write_text(plan: &Plan, style: Style, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    if !plan.has_changes() {
        out.write_str(&style.bold("No changes."))?;
        out.write_str(" The live objects match the file and the state.\n")?;
        return Ok(());
    }
    let verb = if plan.operation == "destroy" {
        "destroy"
    } else {
        "apply"
    };
    writeln!(out, "dcm will perform the following actions ({verb}):")?;
    let mut renders = crate::diff::Renders::of(plan.changes.iter().map(|c| &c.diff));
    for c in &plan.changes {
        out.write_char('\n')?;
        let symbol = match c.action {
            Action::Create => style.green("+"),
            Action::Update => style.yellow("~"),
            Action::Delete => style.red("-"),
            Action::Forget | Action::NoOp => style.dim("."),
            Action::Refuse => style.red("!"),
        };
        writeln!(out, "  {symbol} {}", style.bold(&headline(c)))?;
        for n in &c.notes {
            writeln!(out, "    # ({n})")?;
        }
        let mut written = Ok(());
        c.diff.for_each_shared(&mut renders, |tag, text| {
            if written.is_ok() {
                written = if style.color {
                    writeln!(out, "      {}", paint_line(tag, text, style))
                } else if tag == '@' {
                    writeln!(out, "      {text}")
                } else {
                    writeln!(out, "      {tag} {text}")
                };
            }
        });
        written?;
    }
    out.write_char('\n')?;
    writeln!(out, "{}", style.bold(&summary_line(plan)))?;
    if let Some(l) = state_only_line(plan) {
        writeln!(out, "{l}")?;
    }
    if let Some(l) = refused_line(plan) {
        writeln!(out, "{}", style.red(&l))?;
    }
    Ok(())
}

/// How a review comment is laid out: the project it is about, its size limit, and how
/// a reader sees what it leaves out.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The project's name, for the heading and the marker.
    pub project: String,
    /// The most bytes the whole comment may take.
    pub max_bytes: usize,
    /// What shows everything (Markdown), e.g. "The full plan: `dcm show plan.json`."
    pub full_hint: String,
}

/// The word an action has in Markdown (and its table column).
fn action_word(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
        Action::Forget => "forget",
        Action::NoOp => "record",
        Action::Refuse => "refused",
    }
}

/// A table by cluster × action: one row per cluster, one column per action that occurs,
/// and a total row when there are several clusters.
fn plan_table(plan: &Plan) -> crate::markdown::Table {
    crate::markdown::Table::counts(
        plan.changes.iter().map(|c| (c.address.clone(), c.action)),
        |a| action_word(a).to_string(),
    )
}

/// One change as a review block: a `<details>` with its reason, notes and diff when it
/// has a diff; else one line.
fn plan_item(c: &Change) -> crate::markdown::Item {
    use crate::markdown::{code_block, details, escape_html, escape_text, Item};
    let what = headline(c);
    let what = what
        .strip_prefix(c.address.as_str())
        .unwrap_or(&what)
        .trim();
    let why = |text: &str| -> String {
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", escape_text(text))
        }
    };
    let line = format!("- `{}` {what}{}\n", c.address, why(&c.reason));
    if c.diff.is_empty() {
        return Item {
            full: line.clone(),
            line,
        };
    }
    let mut body = String::new();
    if !c.reason.is_empty() {
        body.push_str(&format!("**Why:** {}\n\n", escape_text(&c.reason)));
    }
    let others: Vec<&String> = c.notes.iter().filter(|n| **n != c.reason).collect();
    for n in &others {
        body.push_str(&format!("- {}\n", escape_text(n)));
    }
    if !others.is_empty() {
        body.push('\n');
    }
    let mut lines: Vec<String> = Vec::new();
    c.diff.for_each(|tag, text| {
        lines.push(if tag == '@' {
            text.to_string()
        } else {
            format!("{tag}{text}")
        })
    });
    body.push_str(&code_block("diff", &lines));
    Item {
        full: details(
            &format!(
                "<code>{}</code> {}",
                escape_html(&c.address),
                escape_html(what)
            ),
            &body,
        ),
        line,
    }
}

/// The plan as Markdown, for a pull-request comment: a marker CI can find the comment by
/// (`<!-- dcm:plan:<project> -->`), a heading, the summary, a table by cluster and action,
/// then each change (a `<details>` with its diff, or one line), within `max_bytes`.
pub fn markdown(plan: &Plan, opts: &ReviewOptions) -> Result<String, crate::markdown::TooSmall> {
    let mut summary = if plan.has_changes() {
        format!("**{}**", summary_line(plan))
    } else {
        "**No changes.** The live objects match the file and the state.".to_string()
    };
    if plan.operation == "destroy" {
        summary.push_str(" (destroy)");
    }
    if let Some(l) = state_only_line(plan) {
        summary.push_str(&format!(" {l}"));
    }
    if let Some(l) = refused_line(plan) {
        summary.push_str(&format!(" **{l}**"));
    }
    let review = crate::markdown::Review {
        kind: "plan",
        project: opts.project.clone(),
        summary,
        table: plan.has_changes().then(|| plan_table(plan)),
        items: plan.changes.iter().map(plan_item).collect(),
        full_hint: opts.full_hint.clone(),
        noun: "change",
    };
    crate::markdown::fit(&review, opts.max_bytes)
}

/// The plan as JSON (the same document `-o` saves, without its checksum).
pub fn json(plan: &Plan) -> String {
    let mut s =
        serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
