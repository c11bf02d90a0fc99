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
    let _ = write_text_on_two_threads(plan, style, &mut crate::output::OutChunks::default());
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
    if !write_header(plan, style, out)? {
        return Ok(());
    }
    let mut renders = crate::diff::Renders::of(plan.changes.iter().map(|c| &c.diff));
    for c in &plan.changes {
        write_change(c, style, &mut renders, out)?;
    }
    write_footer(plan, style, out)
}

/// [`write_text`], with the changes rendered on two threads, a run of changes at a time,
/// and written in order: the same bytes, in about half the time for a large plan.
fn write_text_on_two_threads(
    plan: &Plan,
    style: Style,
    out: &mut impl std::fmt::Write,
) -> std::fmt::Result {
    const RUN: usize = 256;
    if plan.changes.len() < 4 * RUN {
        return write_text(plan, style, out);
    }
    if !write_header(plan, style, out)? {
        return Ok(());
    }
    let runs: Vec<&[Change]> = plan.changes.chunks(RUN).collect();
    let runs = &runs;
    std::thread::scope(|scope| {
        let mut rendered = Vec::new();
        for first in 0..2 {
            let (tx, rx) = std::sync::mpsc::sync_channel::<String>(2);
            rendered.push(rx);
            scope.spawn(move || {
                let mine = || runs.iter().skip(first).step_by(2);
                let mut renders =
                    crate::diff::Renders::of(mine().flat_map(|run| run.iter().map(|c| &c.diff)));
                for run in mine() {
                    let mut text = String::new();
                    for c in run.iter() {
                        // Writing to a String cannot fail.
                        let _ = write_change(c, style, &mut renders, &mut text);
                    }
                    if tx.send(text).is_err() {
                        return; // the writer stopped
                    }
                }
            });
        }
        for k in 0..runs.len() {
            match rendered[k % 2].recv() {
                Ok(text) => out.write_str(&text)?,
                Err(_) => return Err(std::fmt::Error),
            }
        }
        Ok(())
    })?;
    write_footer(plan, style, out)
}

/// The plan's first line (or its only one, when nothing changes); whether changes follow.
fn write_header(
    plan: &Plan,
    style: Style,
    out: &mut impl std::fmt::Write,
) -> Result<bool, std::fmt::Error> {
    if !plan.has_changes() {
        out.write_str(&style.bold("No changes."))?;
        out.write_str(" The live objects match the file and the state.\n")?;
        return Ok(false);
    }
    let verb = if plan.operation == "destroy" {
        "destroy"
    } else {
        "apply"
    };
    writeln!(out, "dcm will perform the following actions ({verb}):")?;
    Ok(true)
}

/// One change: its headline, notes and diff.
fn write_change(
    c: &Change,
    style: Style,
    renders: &mut crate::diff::Renders,
    out: &mut impl std::fmt::Write,
) -> std::fmt::Result {
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
    c.diff.for_each_shared(renders, |tag, text| {
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
    written
}

/// The summary after the changes.
fn write_footer(plan: &Plan, style: Style, out: &mut impl std::fmt::Write) -> std::fmt::Result {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan of `clusters` × `per_cluster` creates, the same manifests in every cluster.
    fn big_plan(clusters: usize, per_cluster: usize) -> Plan {
        let mut toml = String::new();
        let names: Vec<String> = (0..clusters).map(|c| format!("\"c{c}\"")).collect();
        for c in 0..clusters {
            toml.push_str(&format!("[clusters.c{c}]\ndir = \"x{c}\"\n"));
        }
        for i in 0..per_cluster {
            toml.push_str(&format!(
                "[[resources]]\nclusters = [{}]\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"m{i}\" }}, data = {{ k = \"{i}\" }} }}\n",
                names.join(", ")
            ));
        }
        let src = crate::diag::SourceFile::new("t.toml", toml);
        let model = crate::model::build(crate::config::parse(src, ".".into()).unwrap()).unwrap();
        let desired = crate::compile::compile(&model, &Default::default()).unwrap();
        let graph = crate::graph::build(&desired).unwrap();
        crate::plan::build(&mut crate::plan::PlanInputs {
            desired: &desired,
            graph: &graph,
            state: None,
            live: &mut Default::default(),
            config: "t.toml".into(),
            destroy: false,
            ownership: Default::default(),
        })
    }

    #[test]
    fn a_large_plan_rendered_on_two_threads_is_the_same_text() {
        let plan = big_plan(3, 500);
        assert_eq!(plan.changes.len(), 1500, "large enough to be split");
        for style in [Style { color: false }, Style { color: true }] {
            let mut two = String::new();
            write_text_on_two_threads(&plan, style, &mut two).unwrap();
            assert_eq!(two, text(&plan, style));
        }
        let plain = text(&plan, Style::default());
        assert!(plain.contains(
            "  + c2/core/ConfigMap/default/m99 will be created\n      + apiVersion: v1\n"
        ));
        assert!(plain.ends_with("Plan: 1500 to add, 0 to change, 0 to destroy.\n"));
    }
}
