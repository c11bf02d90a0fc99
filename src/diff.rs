//! Text diffs of objects, as a reviewer reads them: YAML with sorted keys, Secret values
//! replaced by short hashes, unified hunks with three lines of context.
//!
//! This module never decides whether an object changed (hashes do that); it only shows how.

use crate::object::redact;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

/// An object as the YAML a reviewer sees (secrets redacted).
pub fn to_review_yaml(object: &Value) -> String {
    serde_yaml_ng::to_string(&redact(object)).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// One line of a rendered change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiffLine {
    /// '+', '-', ' ' (context) or '@' (hunk header).
    pub tag: char,
    pub text: String,
}

/// Every line of `object`, marked with `tag` (a whole object being created or deleted).
pub fn whole(object: &Value, tag: char) -> Vec<DiffLine> {
    to_review_yaml(object)
        .lines()
        .map(|l| DiffLine {
            tag,
            text: l.to_string(),
        })
        .collect()
}

/// The unified diff from `before` to `after`.
pub fn unified(before: &Value, after: &Value) -> Vec<DiffLine> {
    let old = to_review_yaml(before);
    let new = to_review_yaml(after);
    let diff = TextDiff::from_lines(&old, &new);
    let mut out = Vec::new();
    for group in diff.grouped_ops(3) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        out.push(DiffLine {
            tag: '@',
            text: format!(
                "@@ -{},{} +{},{} @@",
                old_range.start + 1,
                old_range.len(),
                new_range.start + 1,
                new_range.len()
            ),
        });
        for op in &group {
            for change in diff.iter_changes(op) {
                let tag = match change.tag() {
                    ChangeTag::Equal => ' ',
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                };
                out.push(DiffLine {
                    tag,
                    text: change.value().trim_end_matches('\n').to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_diff_shows_only_the_change_with_context() {
        let a = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6"}});
        let mut b = a.clone();
        b["data"]["f"] = json!("7");
        let lines = unified(&a, &b);
        let text: Vec<String> = lines
            .iter()
            .map(|l| format!("{}{}", l.tag, l.text))
            .collect();
        assert_eq!(text.iter().filter(|l| l.starts_with('-')).count(), 1);
        assert!(text.contains(&"-  f: '6'".to_string()), "{text:#?}");
        assert!(text.contains(&"+  f: '7'".to_string()), "{text:#?}");
        assert!(
            !text.iter().any(|l| l.contains("a: '1'")),
            "context is 3 lines: {text:#?}"
        );
    }

    #[test]
    fn secrets_are_shown_as_hashes() {
        let a = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"data":{"k":"c2VjcmV0"}});
        let mut b = a.clone();
        b["data"]["k"] = json!("bmV3");
        let all: String = unified(&a, &b).iter().map(|l| l.text.clone()).collect();
        assert!(!all.contains("c2VjcmV0") && !all.contains("bmV3"), "{all}");
        assert!(all.contains("sensitive, sha256:"), "{all}");
    }
}
