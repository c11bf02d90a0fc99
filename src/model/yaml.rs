//! Reading YAML manifests strictly: a duplicate key, a NaN or an infinity is an error at
//! its own line and column (serde_yaml_ng takes the last of duplicate keys silently).
//!
//! The parser gives no positions for values it reads well, only for errors. So one pass
//! builds the JSON value and fails at the first ambiguous node (whose position the error
//! carries); finding the position of any other node (the first of two duplicate keys, a
//! `metadata.name` that breaks a rule) is a second pass over the same document that fails
//! on purpose when it reaches that node.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// One step of a path into a document: a mapping key, or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Which node a locating pass stops at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The n-th node (keys counted) in document order.
    Node(usize),
    /// The value at this path.
    Value(Vec<Seg>),
}

/// Why a document could not be read, with the 1-based line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub at: Option<(usize, usize)>,
    /// For a duplicate key: where the first one is.
    pub first_at: Option<(usize, usize)>,
}

const HERE: &str = "\u{0}dcm-locate";

struct Walk<'a> {
    counter: &'a Cell<usize>,
    target: Option<&'a Target>,
    /// For a duplicate key: the node number of the first occurrence.
    first_dup: &'a Cell<Option<usize>>,
    depth: usize,
}

impl<'a> Walk<'a> {
    fn next_node(&self, path: &[Seg]) -> bool {
        let n = self.counter.get();
        self.counter.set(n + 1);
        match self.target {
            Some(Target::Node(t)) => *t == n,
            Some(Target::Value(p)) => p.as_slice() == path,
            None => false,
        }
    }
}

struct ValueSeed<'w, 'a> {
    walk: &'w Walk<'a>,
    path: Vec<Seg>,
}

struct ValueVisitor<'w, 'a> {
    walk: &'w Walk<'a>,
    path: Vec<Seg>,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let path = self.path;
        if path.len() > 256 || self.walk.depth > 256 {
            return Err(de::Error::custom("the document is nested too deeply"));
        }
        let stop = self.walk.next_node(&path);
        d.deserialize_any(ValueVisitor {
            walk: self.walk,
            path,
            stop,
        })
    }
}

impl ValueVisitor<'_, '_> {
    fn check<E: de::Error>(&self) -> Result<(), E> {
        if self.stop {
            Err(E::custom(HERE))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_, '_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.check()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.check()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.check()?;
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.check()?;
        Ok(Value::from(v))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Value, E> {
        self.check()?;
        Err(E::custom("integer out of range (at most 64 bits)"))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Value, E> {
        self.check()?;
        Err(E::custom("integer out of range (at most 64 bits)"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.check()?;
        match Number::from_f64(v) {
            Some(n) if v.is_finite() => Ok(Value::Number(n)),
            _ => Err(E::custom(
                "NaN and infinity are not allowed (quote the value to mean a string)",
            )),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.check()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.check()?;
        let walk = Walk {
            depth: self.walk.depth + 1,
            ..*self.walk
        };
        let mut out = Vec::new();
        loop {
            let mut path = self.path.clone();
            path.push(Seg::Index(out.len()));
            let seed = ValueSeed { walk: &walk, path };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.check()?;
        let walk = Walk {
            depth: self.walk.depth + 1,
            ..*self.walk
        };
        let mut out = Map::new();
        let mut seen: Vec<(String, usize)> = Vec::new();
        loop {
            let node = walk.counter.get();
            let key_seed = KeySeed {
                walk: &walk,
                seen: &seen,
                path: &self.path,
            };
            let Some(key) = map.next_key_seed(key_seed)? else {
                break;
            };
            seen.push((key.clone(), node));
            let mut path = self.path.clone();
            path.push(Seg::Key(key.clone()));
            let v = map.next_value_seed(ValueSeed { walk: &walk, path })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

struct KeySeed<'w, 'a, 's> {
    walk: &'w Walk<'a>,
    seen: &'s [(String, usize)],
    path: &'s [Seg],
}

struct KeyVisitor<'s> {
    seen: &'s [(String, usize)],
    first_dup: &'s Cell<Option<usize>>,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_, '_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        // A key is found by its node number only (its path is its mapping's value).
        let n = self.walk.counter.get();
        self.walk.counter.set(n + 1);
        let stop = matches!(self.walk.target, Some(Target::Node(t)) if *t == n);
        let _ = self.path;
        d.deserialize_any(KeyVisitor {
            seen: self.seen,
            first_dup: self.walk.first_dup,
            stop,
        })
    }
}

impl KeyVisitor<'_> {
    fn key<E: de::Error>(self, k: String) -> Result<String, E> {
        if self.stop {
            return Err(E::custom(HERE));
        }
        if let Some((_, first)) = self.seen.iter().find(|(s, _)| *s == k) {
            self.first_dup.set(Some(*first));
            return Err(E::custom(format!("duplicate key `{}`", printable(&k))));
        }
        Ok(k)
    }
}

impl<'de> Visitor<'de> for KeyVisitor<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        if !v.is_finite() {
            return Err(E::custom("NaN and infinity are not allowed as keys"));
        }
        self.key(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        if self.stop {
            return Err(E::custom(HERE));
        }
        Err(E::custom("a mapping key must not be empty (null)"))
    }
}

/// `s` with control characters escaped, to name a key in a message.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn error_at(e: &serde_yaml_ng::Error) -> Option<(usize, usize)> {
    e.location().map(|l| (l.line(), l.column()))
}

/// serde_yaml puts "at line X column Y" in its message; the location is shown apart.
fn strip_location(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // A path prefix (`metadata.name: ...`) repeats what the location says.
    msg.to_string()
}

/// Runs one pass over one document.
fn pass_over<'de>(
    doc: serde_yaml_ng::Deserializer<'de>,
    target: Option<&Target>,
) -> Result<Value, (serde_yaml_ng::Error, Option<usize>)> {
    let counter = Cell::new(0);
    let first_dup = Cell::new(None);
    let walk = Walk {
        counter: &counter,
        target,
        first_dup: &first_dup,
        depth: 0,
    };
    let seed = ValueSeed {
        walk: &walk,
        path: Vec::new(),
    };
    seed.deserialize(doc).map_err(|e| (e, first_dup.get()))
}

/// Runs one pass over document `index` of `text` (to locate something in it: errors only).
fn pass(
    text: &str,
    index: usize,
    target: Option<&Target>,
) -> Option<Result<Value, (serde_yaml_ng::Error, Option<usize>)>> {
    let doc = serde_yaml_ng::Deserializer::from_str(text).nth(index)?;
    Some(pass_over(doc, target))
}

/// Every document of `text`, strictly read, in one pass over the text; stops at the first
/// error (the parser cannot resume after one).
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match pass_over(doc, None) {
            Ok(v) => out.push(v),
            Err((e, first)) => {
                let first_at = first.and_then(|n| locate(text, index, &Target::Node(n)));
                return Err(YamlError {
                    message: strip_location(&e.to_string()),
                    at: error_at(&e),
                    first_at,
                });
            }
        }
    }
    Ok(out)
}

fn locate(text: &str, index: usize, target: &Target) -> Option<(usize, usize)> {
    match pass(text, index, Some(target))? {
        Ok(_) => None,
        Err((e, _)) if e.to_string().contains(HERE) => error_at(&e),
        Err(_) => None,
    }
}

/// The line and column of the value at `path` in document `index` (0-based).
pub fn locate_value(text: &str, index: usize, path: &[Seg]) -> Option<(usize, usize)> {
    locate(text, index, &Target::Value(path.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_name_both_places() {
        let text = "a: 1\nmetadata:\n  name: x\n  other: 2\n  name: y\n";
        let e = documents(text).unwrap_err();
        assert!(e.message.contains("duplicate key `name`"), "{e:?}");
        assert_eq!(e.at, Some((5, 3)));
        assert_eq!(e.first_at, Some((3, 3)));
    }

    #[test]
    fn nan_and_inf_are_errors_at_their_place() {
        for v in [".nan", ".inf", "-.inf", ".NaN", ".Inf"] {
            let e = documents(&format!("a: 1\nb: {v}\n")).unwrap_err();
            assert!(e.message.contains("NaN"), "{v}: {e:?}");
            assert_eq!(e.at, Some((2, 4)), "{v}");
        }
    }

    #[test]
    fn values_are_located_by_path() {
        let text = "x: 1\n---\nkind: A\nmetadata:\n  labels: {a: b}\n  name: n\nitems:\n- q\n- r\n";
        let docs = documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        let k = |s: &str| Seg::Key(s.into());
        assert_eq!(
            locate_value(text, 1, &[k("metadata"), k("name")]),
            Some((6, 9))
        );
        assert_eq!(
            locate_value(text, 1, &[k("items"), Seg::Index(1)]),
            Some((9, 3))
        );
        assert_eq!(locate_value(text, 1, &[k("nope")]), None);
    }

    #[test]
    fn empty_documents_are_null() {
        for text in ["", "# c\n", "---\n", "---\n# c\n---\n"] {
            let docs = documents(text).unwrap();
            assert!(docs.iter().all(Value::is_null), "{text:?}: {docs:?}");
        }
    }
}
