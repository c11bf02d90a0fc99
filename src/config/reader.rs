//! A typed walk over a spanned TOML tree that records every problem instead of stopping.
//!
//! Each `TableView` remembers which keys were asked for; `finish` reports the rest as
//! unknown, with the closest asked-for key as a hint. So the set of known keys is exactly
//! the set the loader reads: it is written once.

use super::Spanned;
use crate::diag::{did_you_mean, Diagnostic, SourceFile};
use serde_json::Value;
use std::ops::Range;
use toml_edit::{Item, TableLike};

/// One table being read, and the keys read from it so far.
pub struct TableView<'t> {
    table: &'t dyn TableLike,
    /// How the user would name this table (`clusters.a`, `resources[2]`).
    path: String,
    pub span: Option<Range<usize>>,
    known: Vec<String>,
    /// The table's place in any file (`clusters.<name>`, `resources[]`), for [`KeyLog`].
    pattern: String,
    /// Its keys are names the user chose (cluster names, labels), not keys dcm reads.
    names: bool,
}

impl<'t> TableView<'t> {
    pub fn root(table: &'t toml_edit::Table) -> Self {
        TableView {
            table,
            path: String::new(),
            span: None,
            known: Vec::new(),
            pattern: String::new(),
            names: false,
        }
    }

    /// Every key of this table, with its span, in file order. Marks them all as known:
    /// they are names (of clusters, labels, headers), not keys dcm reads.
    pub fn keys(&mut self) -> Vec<Spanned<String>> {
        self.names = true;
        let keys: Vec<Spanned<String>> = self
            .table
            .iter()
            .map(|(k, _)| {
                let span = self.table.get_key_value(k).and_then(|(key, _)| key.span());
                Spanned::new(k.to_string(), span)
            })
            .collect();
        self.known.extend(keys.iter().map(|k| k.value.clone()));
        keys
    }

    /// The pattern of a key of this table: `clusters.<name>`, `clusters.<name>.dir`.
    fn child_pattern(&self, key: &str) -> String {
        let key = if self.names { "<name>" } else { key };
        if self.pattern.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.pattern)
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }
}

/// Collects diagnostics while reading one file.
pub struct Reader<'s> {
    source: &'s SourceFile,
    diags: Vec<Diagnostic>,
    /// What was asked for, when kept (see [`Reader::keeping_keys`]).
    log: Option<KeyLog>,
}

/// Every key the loader asks for while reading a file, whether the file has it or not:
/// the keys it accepts. Keys inside a table are only asked for when the file has the
/// table, so `tables` and `entered` tell which tables a file left unread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLog {
    /// Keys as patterns: `clusters.<name>.dir`, `resources[].file`,
    /// `logical_clouds.<name>.services[].ports[].number`.
    pub keys: std::collections::BTreeSet<String>,
    /// The keys asked for as tables or arrays of tables (`resources[]`).
    pub tables: std::collections::BTreeSet<String>,
    /// The tables the file had, so their keys were asked for.
    pub entered: std::collections::BTreeSet<String>,
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
        Item::Value(v) => match v {
            toml_edit::Value::String(_) => "string",
            toml_edit::Value::Integer(_) => "integer",
            toml_edit::Value::Float(_) => "float",
            toml_edit::Value::Boolean(_) => "boolean",
            toml_edit::Value::Datetime(_) => "datetime",
            toml_edit::Value::Array(_) => "array",
            toml_edit::Value::InlineTable(_) => "table",
        },
    }
}

impl<'s> Reader<'s> {
    pub fn new(source: &'s SourceFile) -> Self {
        Reader {
            source,
            diags: Vec::new(),
            log: None,
        }
    }

    /// A reader that also keeps every key it is asked for ([`KeyLog`]).
    pub fn keeping_keys(source: &'s SourceFile) -> Self {
        Reader {
            log: Some(KeyLog::default()),
            ..Reader::new(source)
        }
    }

    /// The keys asked for so far (empty unless made with [`Reader::keeping_keys`]).
    pub fn key_log(&self) -> KeyLog {
        self.log.clone().unwrap_or_default()
    }

    fn log_key(&mut self, t: &TableView<'_>, key: &str) {
        if let Some(log) = self.log.as_mut().filter(|_| !t.names) {
            log.keys.insert(t.child_pattern(key));
        }
    }

    fn log_table(&mut self, pattern: &str, entered: bool, asked: bool) {
        if let Some(log) = self.log.as_mut() {
            if asked {
                log.tables.insert(pattern.to_string());
            }
            if entered {
                log.entered.insert(pattern.to_string());
            }
        }
    }

    /// Every problem found, in the order they appear in the file.
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diags
            .sort_by_key(|d| d.location.as_ref().map(|l| (l.line, l.col)));
        self.diags
    }

    fn get<'t>(&mut self, t: &mut TableView<'t>, key: &str) -> Option<&'t Item> {
        self.log_key(t, key);
        t.known.push(key.to_string());
        t.table.get(key).filter(|i| !i.is_none())
    }

    fn wrong_type(&mut self, t: &TableView<'_>, key: &str, want: &str, item: &Item) {
        let d = Diagnostic::new(format!(
            "`{}` must be {want}, found {}",
            t.child_path(key),
            type_name(item)
        ))
        .at_span(self.source, item.span());
        self.diags.push(d);
    }

    pub fn string(&mut self, t: &mut TableView<'_>, key: &str) -> Option<Spanned<String>> {
        let item = self.get(t, key)?;
        match item.as_str() {
            Some(s) => Some(Spanned::new(s.to_string(), item.span())),
            None => {
                self.wrong_type(t, key, "a string", item);
                None
            }
        }
    }

    pub fn integer(&mut self, t: &mut TableView<'_>, key: &str) -> Option<Spanned<i64>> {
        let item = self.get(t, key)?;
        match item.as_integer() {
            Some(n) => Some(Spanned::new(n, item.span())),
            None => {
                self.wrong_type(t, key, "an integer", item);
                None
            }
        }
    }

    pub fn boolean(&mut self, t: &mut TableView<'_>, key: &str) -> Option<Spanned<bool>> {
        let item = self.get(t, key)?;
        match item.as_bool() {
            Some(b) => Some(Spanned::new(b, item.span())),
            None => {
                self.wrong_type(t, key, "true or false", item);
                None
            }
        }
    }

    pub fn string_list(
        &mut self,
        t: &mut TableView<'_>,
        key: &str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        let item = self.get(t, key)?;
        let Some(array) = item.as_array() else {
            self.wrong_type(t, key, "an array of strings", item);
            return None;
        };
        let mut out = Vec::new();
        for v in array.iter() {
            match v.as_str() {
                Some(s) => out.push(Spanned::new(s.to_string(), v.span())),
                None => {
                    let d = Diagnostic::new(format!(
                        "`{}` must contain only strings, found {}",
                        t.child_path(key),
                        v.type_name()
                    ))
                    .at_span(self.source, v.span());
                    self.diags.push(d);
                }
            }
        }
        Some(Spanned::new(out, item.span()))
    }

    pub fn table<'t>(&mut self, t: &mut TableView<'t>, key: &str) -> Option<TableView<'t>> {
        let pattern = t.child_pattern(key);
        let item = self.get(t, key);
        let table = item.and_then(|i| i.as_table_like());
        self.log_table(&pattern, table.is_some(), !t.names);
        let item = item?;
        match table {
            Some(table) => Some(TableView {
                table,
                path: t.child_path(key),
                span: item.span(),
                known: Vec::new(),
                pattern,
                names: false,
            }),
            None => {
                self.wrong_type(t, key, "a table", item);
                None
            }
        }
    }

    /// A table of string values (`{ cluster1 = "10.96.0.53" }`), in file order.
    pub fn string_map(
        &mut self,
        t: &mut TableView<'_>,
        key: &str,
    ) -> Vec<(Spanned<String>, Spanned<String>)> {
        let mut out = Vec::new();
        if let Some(mut map) = self.table(t, key) {
            for k in map.keys() {
                if let Some(v) = self.string(&mut map, &k.value) {
                    out.push((k, v));
                }
            }
            self.finish(map);
        }
        out
    }

    /// Every entry of a table whose keys are names (`[clusters.<name>]`).
    pub fn named_tables<'t>(
        &mut self,
        t: &mut TableView<'t>,
    ) -> Vec<(Spanned<String>, TableView<'t>)> {
        let mut out = Vec::new();
        for key in t.keys() {
            if let Some(view) = self.table(t, &key.value) {
                out.push((key, view));
            }
        }
        out
    }

    /// `[[key]]` entries, or an inline array of tables.
    pub fn table_array<'t>(&mut self, t: &mut TableView<'t>, key: &str) -> Vec<TableView<'t>> {
        let pattern = format!("{}[]", t.child_pattern(key));
        let item = self.get(t, key);
        let entered = matches!(
            item,
            Some(Item::ArrayOfTables(_) | Item::Value(toml_edit::Value::Array(_)))
        );
        self.log_table(&pattern, entered, !t.names);
        let Some(item) = item else {
            return Vec::new();
        };
        let path = t.child_path(key);
        match item {
            Item::ArrayOfTables(a) => a
                .iter()
                .enumerate()
                .map(|(i, table)| TableView {
                    table,
                    path: format!("{path}[{i}]"),
                    span: table.span(),
                    known: Vec::new(),
                    pattern: pattern.clone(),
                    names: false,
                })
                .collect(),
            Item::Value(toml_edit::Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v.as_inline_table() {
                        Some(table) => out.push(TableView {
                            table,
                            path: format!("{path}[{i}]"),
                            span: v.span(),
                            known: Vec::new(),
                            pattern: pattern.clone(),
                            names: false,
                        }),
                        None => {
                            let d = Diagnostic::new(format!(
                                "`{path}` must contain only tables, found {}",
                                v.type_name()
                            ))
                            .at_span(self.source, v.span());
                            self.diags.push(d);
                        }
                    }
                }
                out
            }
            other => {
                self.wrong_type(t, key, "an array of tables", other);
                Vec::new()
            }
        }
    }

    /// Any TOML value, converted to JSON (for inline Kubernetes manifests).
    pub fn json(&mut self, t: &mut TableView<'_>, key: &str) -> Option<Spanned<Value>> {
        let item = self.get(t, key)?;
        let before = self.diags.len();
        self.check_finite_item(item);
        if self.diags.len() > before {
            return None;
        }
        Some(Spanned::new(item_to_json(item), item.span()))
    }

    /// Reports every `nan` and `inf` in a value: JSON (and Kubernetes) have no such numbers.
    fn check_finite_item(&mut self, item: &Item) {
        match item {
            Item::Value(v) => self.check_finite(v),
            Item::Table(t) => t.iter().for_each(|(_, i)| self.check_finite_item(i)),
            Item::ArrayOfTables(a) => a
                .iter()
                .for_each(|t| t.iter().for_each(|(_, i)| self.check_finite_item(i))),
            Item::None => {}
        }
    }

    fn check_finite(&mut self, v: &toml_edit::Value) {
        match v {
            toml_edit::Value::Float(f) if !f.value().is_finite() => {
                let d = Diagnostic::new(
                    "NaN and infinity are not allowed in a manifest (quote the value to mean a string)",
                )
                .at_span(self.source, v.span());
                self.diags.push(d);
            }
            toml_edit::Value::Array(a) => a.iter().for_each(|v| self.check_finite(v)),
            toml_edit::Value::InlineTable(t) => t.iter().for_each(|(_, v)| self.check_finite(v)),
            _ => {}
        }
    }

    /// Reports every key of `t` that nobody asked for.
    pub fn finish(&mut self, t: TableView<'_>) {
        for (key, _) in t.table.iter() {
            if t.known.iter().any(|k| k == key) {
                continue;
            }
            let span = t.table.get_key_value(key).and_then(|(k, _)| k.span());
            let place = if t.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{}]", t.path)
            };
            let mut d =
                Diagnostic::new(format!("unknown key `{key}` {place}")).at_span(self.source, span);
            if let Some(s) = did_you_mean(key, t.known.iter().map(String::as_str)) {
                d = d.help(format!("did you mean `{s}`?"));
            } else if !t.known.is_empty() {
                let mut known = t.known.clone();
                known.sort();
                known.dedup();
                d = d.help(format!("known keys here: {}", known.join(", ")));
            }
            self.diags.push(d);
        }
    }
}

fn value_to_json(v: &toml_edit::Value) -> Value {
    match v {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        toml_edit::Value::InlineTable(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

fn item_to_json(item: &Item) -> Value {
    match item {
        Item::None => Value::Null,
        Item::Value(v) => value_to_json(v),
        Item::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), item_to_json(v)))
                .collect(),
        ),
        Item::ArrayOfTables(a) => Value::Array(
            a.iter()
                .map(|t| {
                    Value::Object(
                        t.iter()
                            .map(|(k, v)| (k.to_string(), item_to_json(v)))
                            .collect(),
                    )
                })
                .collect(),
        ),
    }
}
