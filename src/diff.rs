//! Text diffs of objects, as a reviewer reads them: YAML with sorted keys, Secret values
//! replaced by short hashes, unified hunks with three lines of context.
//!
//! This module never decides whether an object changed (hashes do that); it only shows how.

use crate::object::redact;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use std::collections::HashMap;
use std::sync::Arc;

/// An object as the YAML a reviewer sees (secrets redacted).
pub fn to_review_yaml(object: &Value) -> String {
    let rendered = if crate::object::is_secret_object(object) {
        serde_yaml_ng::to_string(&redact(object))
    } else {
        serde_yaml_ng::to_string(object) // nothing to redact: no copy
    };
    rendered.unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// How a change is shown: lines worked out when the plan was made (an update's hunks, or
/// a Secret's redacted lines), or a whole object created or deleted, rendered only when
/// it is shown. A plan of 100k creates would otherwise hold every object twice, once as
/// an object and once as YAML lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Diff {
    #[default]
    None,
    Lines(Vec<DiffLine>),
    /// Every line of `object`'s review YAML, marked with `tag` ('+' or '-').
    Whole {
        tag: char,
        object: Arc<Value>,
    },
}

impl Diff {
    /// A whole object created (`'+'`) or deleted (`'-'`): `object` as it is, and `shown`,
    /// the same object as a plan shows it (shared, for anything but a Secret). A Secret's
    /// lines are rendered now, from `object`, so sealing their short hashes
    /// ([`Diff::lines_mut`]) sees them.
    pub fn whole(object: &Value, shown: &Arc<Value>, tag: char) -> Diff {
        if crate::object::is_secret_object(object) {
            Diff::Lines(whole(object, tag))
        } else {
            Diff::Whole {
                tag,
                object: Arc::clone(shown),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Diff::None => true,
            Diff::Lines(lines) => lines.is_empty(),
            Diff::Whole { .. } => false,
        }
    }

    /// Calls `f` with each line's tag and text, in order.
    pub fn for_each(&self, mut f: impl FnMut(char, &str)) {
        match self {
            Diff::None => {}
            Diff::Lines(lines) => lines.iter().for_each(|l| f(l.tag, &l.text)),
            Diff::Whole { tag, object } => to_review_yaml(object).lines().for_each(|l| f(*tag, l)),
        }
    }

    /// [`Diff::for_each`], rendering a whole object that several diffs share only once
    /// (see [`Renders`]).
    pub fn for_each_shared(&self, renders: &mut Renders, mut f: impl FnMut(char, &str)) {
        match self {
            Diff::Whole { tag, object } if renders.is_shared(object) => {
                renders.yaml(object).lines().for_each(|l| f(*tag, l));
                renders.used(object);
            }
            _ => self.for_each(f),
        }
    }

    /// The lines worked out in advance (none for a whole non-Secret object, which has no
    /// secret values to seal).
    pub fn lines_mut(&mut self) -> &mut [DiffLine] {
        match self {
            Diff::Lines(lines) => lines,
            Diff::None | Diff::Whole { .. } => &mut [],
        }
    }
}

/// The review YAML of whole objects that several diffs show (one manifest placed in
/// many clusters is one shared tree), rendered once and kept only until its last diff is
/// shown.
#[derive(Default)]
pub struct Renders {
    /// How many diffs still to be shown show each shared tree.
    uses: HashMap<*const Value, usize>,
    yaml: HashMap<*const Value, String>,
}

impl Renders {
    /// For showing `diffs`, each once, in any order. The trees they show must outlive
    /// the `Renders` (pointers are its keys).
    pub fn of<'a>(diffs: impl IntoIterator<Item = &'a Diff>) -> Renders {
        let mut uses: HashMap<*const Value, usize> = HashMap::new();
        for d in diffs {
            if let Diff::Whole { object, .. } = d {
                *uses.entry(Arc::as_ptr(object)).or_default() += 1;
            }
        }
        uses.retain(|_, n| *n > 1);
        Renders {
            uses,
            yaml: HashMap::new(),
        }
    }

    fn is_shared(&self, object: &Arc<Value>) -> bool {
        self.uses.contains_key(&Arc::as_ptr(object))
    }

    fn yaml(&mut self, object: &Arc<Value>) -> &str {
        self.yaml
            .entry(Arc::as_ptr(object))
            .or_insert_with(|| to_review_yaml(object))
    }

    /// One diff of `object` was shown; its YAML goes after the last.
    fn used(&mut self, object: &Arc<Value>) {
        let key = Arc::as_ptr(object);
        if let Some(n) = self.uses.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.uses.remove(&key);
                self.yaml.remove(&key);
            }
        }
    }
}

impl From<Vec<DiffLine>> for Diff {
    fn from(lines: Vec<DiffLine>) -> Diff {
        if lines.is_empty() {
            Diff::None
        } else {
            Diff::Lines(lines)
        }
    }
}

/// Serialized as the list of lines it shows (as it always was): a saved plan and `--json`
/// carry them whole.
impl serde::Serialize for Diff {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(None)?;
        let mut result = Ok(());
        self.for_each(|tag, text| {
            if result.is_ok() {
                result = seq.serialize_element(&DiffLineRef { tag, text });
            }
        });
        result?;
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for Diff {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Diff, D::Error> {
        Vec::<DiffLine>::deserialize(deserializer).map(Diff::from)
    }
}

/// A line being serialized, borrowed.
#[derive(serde::Serialize)]
struct DiffLineRef<'a> {
    tag: char,
    text: &'a str,
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
    fn a_whole_object_is_rendered_when_shown_and_saved_as_its_lines() {
        let cm = Arc::new(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1"}}),
        );
        let diff = Diff::whole(&cm, &cm, '+');
        assert!(
            matches!(diff, Diff::Whole { .. }),
            "kept as the object: {diff:?}"
        );
        let mut shown = Vec::new();
        diff.for_each(|tag, text| shown.push(format!("{tag}{text}")));
        let eager: Vec<String> = whole(&cm, '+')
            .iter()
            .map(|l| format!("{}{}", l.tag, l.text))
            .collect();
        assert_eq!(shown, eager);
        assert!(shown.contains(&"+  a: '1'".to_string()), "{shown:#?}");

        // Saved (a plan file, --json) as the lines themselves, and read back as lines.
        let saved = serde_json::to_value(&diff).unwrap();
        assert_eq!(saved, serde_json::to_value(whole(&cm, '+')).unwrap());
        let read: Diff = serde_json::from_value(saved).unwrap();
        assert_eq!(read, Diff::Lines(whole(&cm, '+')));
        assert_eq!(
            serde_json::from_value::<Diff>(json!([])).unwrap(),
            Diff::None
        );
    }

    #[test]
    fn a_tree_shared_by_several_diffs_is_rendered_once_and_kept_until_its_last() {
        let shared =
            Arc::new(json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}));
        let alone = Arc::new(json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"y"}}));
        let diffs = [
            Diff::whole(&shared, &shared, '+'),
            Diff::whole(&alone, &alone, '+'),
            Diff::whole(&shared, &shared, '-'),
        ];
        let mut renders = Renders::of(&diffs);
        assert!(renders.is_shared(&shared) && !renders.is_shared(&alone));
        for d in &diffs {
            let (mut plain, mut via_cache) = (Vec::new(), Vec::new());
            d.for_each(|tag, text| plain.push(format!("{tag}{text}")));
            d.for_each_shared(&mut renders, |tag, text| {
                via_cache.push(format!("{tag}{text}"))
            });
            assert_eq!(plain, via_cache);
        }
        assert!(
            renders.yaml.is_empty() && renders.uses.is_empty(),
            "dropped after its last use"
        );
    }

    #[test]
    fn a_whole_secret_is_rendered_at_once_from_its_values_and_redacted() {
        let secret = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"data":{"k":"c2VjcmV0"}});
        let shown = Arc::new(redact(&secret));
        let mut diff = Diff::whole(&secret, &shown, '-');
        // Its lines exist now, so sealing can number its short hashes.
        assert!(!diff.lines_mut().is_empty());
        let mut all = String::new();
        diff.for_each(|_, text| all.push_str(text));
        assert!(!all.contains("c2VjcmV0"), "{all}");
        assert_eq!(diff, Diff::Lines(whole(&secret, '-')));
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
