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
    let line = format!("{} {}", l.tag, l.text);
    match l.tag {
        '+' => style.green(&line),
        '-' => style.red(&line),
        '@' => style.cyan(&l.text),
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
    if !plan.has_changes() {
        out.push_str(&style.bold("No changes."));
        out.push_str(" The live objects match the file and the state.\n");
        return out;
    }
    let verb = if plan.operation == "destroy" {
        "destroy"
    } else {
        "apply"
    };
    out.push_str(&format!(
        "dcm will perform the following actions ({verb}):\n"
    ));
    for c in &plan.changes {
        out.push('\n');
        let symbol = match c.action {
            Action::Create => style.green("+"),
            Action::Update => style.yellow("~"),
            Action::Delete => style.red("-"),
            Action::Forget | Action::NoOp => style.dim("."),
            Action::Refuse => style.red("!"),
        };
        out.push_str(&format!("  {symbol} {}\n", style.bold(&headline(c))));
        for n in &c.notes {
            out.push_str(&format!("    # ({n})\n"));
        }
        for l in &c.diff {
            out.push_str(&format!("      {}\n", paint_diff_line(l, style)));
        }
    }
    out.push('\n');
    out.push_str(&style.bold(&summary_line(plan)));
    out.push('\n');
    if let Some(l) = state_only_line(plan) {
        out.push_str(&l);
        out.push('\n');
    }
    if let Some(l) = refused_line(plan) {
        out.push_str(&style.red(&l));
        out.push('\n');
    }
    out
}

/// The plan as Markdown, for a pull-request comment.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::from("### dcm plan\n\n");
    if !plan.has_changes() {
        out.push_str("**No changes.** The live objects match the file and the state.\n");
        return out;
    }
    out.push_str(&format!("**{}**", summary_line(plan)));
    if let Some(l) = state_only_line(plan) {
        out.push_str(&format!(" {l}"));
    }
    if let Some(l) = refused_line(plan) {
        out.push_str(&format!(" **{l}**"));
    }
    out.push_str("\n\n| action | object |\n|---|---|\n");
    for c in &plan.changes {
        let action = match c.action {
            Action::NoOp => "record",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Forget => "forget",
            Action::Refuse => "refused",
        };
        out.push_str(&format!("| {action} | `{}` |\n", c.address));
    }
    for c in plan
        .changes
        .iter()
        .filter(|c| !c.diff.is_empty() || !c.notes.is_empty())
    {
        out.push_str(&format!(
            "\n<details><summary><code>{}</code></summary>\n\n",
            headline(c)
        ));
        for n in &c.notes {
            out.push_str(&format!("_{n}_\n\n"));
        }
        if !c.diff.is_empty() {
            out.push_str("```diff\n");
            for l in &c.diff {
                if l.tag == '@' {
                    out.push_str(&format!("{}\n", l.text));
                } else {
                    out.push_str(&format!("{}{}\n", l.tag, l.text));
                }
            }
            out.push_str("```\n");
        }
        out.push_str("\n</details>\n");
    }
    out
}

/// The plan as JSON (the same document `-o` saves, without its checksum).
pub fn json(plan: &Plan) -> String {
    let mut s =
        serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
