//! Diagnostics: an error found in a user's input, with the place it came from.
//!
//! A diagnostic stores the source location it points at; it is rendered once, at the top
//! level, as `error: ...` followed by `file:line:col`, the offending line and a caret. This
//! module does not decide what is an error; the config and model stages do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A text file the user wrote, kept so that byte spans can become `line:col`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user should see it (as given on the command line or in the file).
    pub display: String,
    pub text: String,
    line_starts: Vec<usize>,
    /// For each line, whether it belongs to a part of the file that may hold a Secret (a
    /// YAML document, or a TOML `[[resources]]` block): its snippets are masked.
    sensitive: Vec<bool>,
    yaml: bool,
}

/// Words that make a line look like credential material; such lines are masked in snippets.
const CREDENTIAL_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "token",
    "secret",
    "key",
    "cred",
    "cert",
    "auth",
    "private",
    "bearer",
    "cookie",
    "session",
    "signature",
];

/// What a region must contain to be taken as possibly holding a Secret: the word itself,
/// or anything that could spell it some other way (an escape, a tag).
fn region_may_hold_secret(text: &str) -> bool {
    text.to_ascii_lowercase().contains("secret") || text.contains('\\') || text.contains('!')
}

/// Which lines of `text` lie in a region that may hold a Secret. Regions are YAML
/// documents (split at `---`/`...`) or, for TOML, `[[...]]` blocks with their subtables.
fn sensitive_lines(text: &str, yaml: bool) -> Vec<bool> {
    let lines: Vec<&str> = text.split('\n').collect();
    let starts_region = |l: &str| {
        if yaml {
            l.starts_with("---") || l.starts_with("...")
        } else {
            let t = l.trim_start();
            t.starts_with("[[") || (t.starts_with('[') && !t.starts_with("[resources"))
        }
    };
    let mut out = vec![false; lines.len()];
    let mut start = 0;
    for i in 0..=lines.len() {
        if i == lines.len() || (i > start && starts_region(lines[i])) {
            let region: Vec<&str> = lines[start..i]
                .iter()
                .copied()
                .filter(|l| yaml || !is_secrets_setting(l))
                .collect();
            if region_may_hold_secret(&region.join("\n")) {
                out[start..i].iter_mut().for_each(|s| *s = true);
            }
            start = i;
        }
    }
    out
}

/// A cluster's `secrets = "plaintext"` (or `"sops"`): a setting of the desired-state
/// file that names how Secrets are written, not one.
fn is_secrets_setting(line: &str) -> bool {
    let Some((key, value)) = line.split_once('=') else {
        return false;
    };
    let value = value.split('#').next().unwrap_or_default().trim();
    key.trim() == "secrets"
        && value.len() > 2
        && value.starts_with('"')
        && value.ends_with('"')
        && value[1..value.len() - 1]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
}

/// Masks what follows the key of `line` (`password: ******`), or the whole line when it
/// has no key.
pub fn mask_line(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let sep = line.find([':', '=']);
    match sep {
        Some(i) if line[i + 1..].trim().is_empty() => line.to_string(),
        Some(i) => format!("{} ******", &line[..=i]),
        None if line.trim().is_empty() => line.to_string(),
        None => format!("{}******", &line[..indent]),
    }
}

/// Whether a line names credential material (a key such as `password` or `token`).
fn looks_like_credential(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|w| lower.contains(w))
}

/// The keys of the desired-state file whose values are paths to PEM or token files: their
/// names look like credentials, their values are not.
fn names_a_path(line: &str) -> bool {
    let Some((key, _)) = line.split_once('=') else {
        return false;
    };
    let key = key.trim();
    [
        "root_cert",
        "ca_cert",
        "ca_key",
        "cert_chain",
        "token_file",
        "ca_file",
    ]
    .contains(&key)
        && !line[key.len()..].to_ascii_lowercase().contains("secret")
}

impl SourceFile {
    /// A TOML file dcm parses.
    pub fn new(display: impl Into<String>, text: String) -> Self {
        Self::with_format(display.into(), text, false)
    }

    /// A YAML file dcm parses (manifests).
    pub fn yaml(display: impl Into<String>, text: String) -> Self {
        Self::with_format(display.into(), text, true)
    }

    fn with_format(display: String, text: String, yaml: bool) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let sensitive = sensitive_lines(&text, yaml);
        SourceFile {
            display,
            text,
            line_starts,
            sensitive,
            yaml,
        }
    }

    /// The text of line `index` (0-based) as a snippet may show it: control characters
    /// made visible, and masked when it may hold a Secret's value or a credential.
    fn snippet(&self, index: usize, raw: &str) -> String {
        let raw = raw.trim_end_matches('\r');
        let setting = !self.yaml && is_secrets_setting(raw);
        let shown = if !setting
            && (self.sensitive.get(index).copied().unwrap_or(true)
                || ((self.yaml || !names_a_path(raw)) && looks_like_credential(raw)))
        {
            mask_line(raw)
        } else {
            raw.to_string()
        };
        shown
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect()
    }

    /// The location of a 1-based line and column (as a YAML parser reports them).
    pub fn locate_line_col(&self, line: usize, col: usize) -> Location {
        let index = line.saturating_sub(1);
        let raw = match (self.line_starts.get(index), self.line_starts.get(index + 1)) {
            (Some(&s), Some(&e)) => &self.text[s..e - 1],
            (Some(&s), None) => &self.text[s..],
            _ => "",
        };
        Location {
            file: self.display.clone(),
            line,
            col,
            line_text: self.snippet(index, raw),
            width: 1,
        }
    }

    /// The location of a byte span (1-based line and column, column counted in characters).
    pub fn locate(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_index];
        let line_end = self
            .line_starts
            .get(line_index + 1)
            .map(|e| e - 1)
            .unwrap_or(self.text.len());
        let line_text = self.snippet(line_index, &self.text[line_start..line_end]);
        let col = self.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end.max(start));
        let width = self.text[start..end].chars().count().max(1);
        Location {
            file: self.display.clone(),
            line: line_index + 1,
            col,
            line_text,
            width,
        }
    }
}

/// A point in a file, with the line's text so the caret can be drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub line_text: String,
    /// How many characters the caret underlines.
    pub width: usize,
}

impl Location {
    /// No place in a file (for objects that come from the state rather than the file).
    pub fn none() -> Location {
        Location {
            file: String::new(),
            line: 0,
            col: 0,
            line_text: String::new(),
            width: 0,
        }
    }
}

/// One problem in the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// A warning never stops a run; it is shown and the run goes on.
    pub warning: bool,
    pub message: String,
    pub location: Option<Location>,
    /// Extra places that matter (e.g. the other definition of a duplicate).
    pub notes: Vec<(String, Option<Location>)>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            warning: false,
            message: message.into(),
            location: None,
            notes: Vec::new(),
            help: None,
        }
    }

    /// A problem worth knowing about that does not stop the run.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            warning: true,
            ..Diagnostic::new(message)
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn at_span(self, source: &SourceFile, span: Option<Range<usize>>) -> Self {
        match span {
            Some(span) => self.at(source.locate(span)),
            None => self.at(Location {
                file: source.display.clone(),
                line: 0,
                col: 0,
                line_text: String::new(),
                width: 0,
            }),
        }
    }

    pub fn note(mut self, text: impl Into<String>, location: Option<Location>) -> Self {
        self.notes.push((text.into(), location));
        self
    }

    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }
}

fn write_location(f: &mut fmt::Formatter<'_>, loc: &Location) -> fmt::Result {
    if loc.line == 0 {
        return writeln!(f, "  --> {}", loc.file);
    }
    let gutter = loc.line.to_string().len();
    writeln!(f, "{:gutter$}--> {}:{}:{}", "", loc.file, loc.line, loc.col)?;
    writeln!(f, "{:gutter$} |", "")?;
    writeln!(f, "{} | {}", loc.line, loc.line_text)?;
    let pad: String = loc
        .line_text
        .chars()
        .take(loc.col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    writeln!(
        f,
        "{:gutter$} | {}{}",
        "",
        pad,
        "^".repeat(loc.width.max(1))
    )
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.warning { "warning" } else { "error" };
        writeln!(f, "{level}: {}", self.message)?;
        if let Some(loc) = &self.location {
            write_location(f, loc)?;
        }
        for (text, loc) in &self.notes {
            writeln!(f, "  = note: {text}")?;
            if let Some(loc) = loc {
                write_location(f, loc)?;
            }
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// The first character YAML and TOML do not allow in a file (a NUL, another control
/// character), as an error at its own line and column.
pub fn control_character(source: &SourceFile) -> Option<Diagnostic> {
    let (pos, c) = source
        .text
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))?;
    Some(
        Diagnostic::new(format!(
            "`{}` holds a control character (U+{:04X}), which is not allowed",
            source.display, c as u32
        ))
        .at(source.locate(pos..pos + c.len_utf8())),
    )
}

/// Every diagnostic of one run, rendered together.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "\nerror: {n} problem{} found; nothing was changed",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // A typo is a few edits away (transpositions count once), or shares a long prefix.
    let max_edits = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| {
            strsim::osa_distance(word, c) <= max_edits || strsim::jaro_winkler(word, c) > 0.88
        })
        .min_by_key(|c| (strsim::osa_distance(word, c), c.to_string()))
}

/// Joins `base` and a path written in the file, so paths are relative to the file.
pub fn resolve_relative(base_dir: &Path, written: &str) -> PathBuf {
    let p = Path::new(written);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_gives_line_col_and_caret() {
        let src = SourceFile::new("x.toml", "a = 1\nbad = 2\n".to_string());
        let loc = src.locate(6..9);
        assert_eq!((loc.line, loc.col, loc.width), (2, 1, 3));
        let text = Diagnostic::new("unknown key `bad`").at(loc).to_string();
        assert!(text.contains("--> x.toml:2:1"), "{text}");
        assert!(text.contains("2 | bad = 2"), "{text}");
        assert!(text.contains("  | ^^^"), "{text}");
    }

    #[test]
    fn a_cluster_s_secrets_setting_is_shown_and_its_table_is_not_masked() {
        let text = "[clusters.a]\ndir = \"out/a\"\nsecrets = \"plaintext\"\n[[resources]]\nclusters = [\"a\"]\nmanifest = { kind = \"Secret\", data = { k = \"c2VjcmV0\" } }\n";
        let src = SourceFile::new("x.toml", text.to_string());
        let at = |needle: &str| {
            let start = text.find(needle).unwrap();
            src.locate(start..start + needle.len()).line_text
        };
        assert_eq!(at("secrets = \"plaintext\""), "secrets = \"plaintext\"");
        assert_eq!(at("dir = \"out/a\""), "dir = \"out/a\"");
        // A Secret's block is still masked, and so is a `secrets` key holding anything
        // other than a setting's word.
        assert_eq!(at("manifest = {"), "manifest = ******");
        let other = "[x]\nsecrets = \"hunter2 and more\"\n";
        let src = SourceFile::new("y.toml", other.to_string());
        assert_eq!(src.locate(4..20).line_text, "secrets = ******");
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("nmae", ["name", "namespace"]), Some("name"));
        assert_eq!(did_you_mean("zzz", ["name", "namespace"]), None);
    }
}
