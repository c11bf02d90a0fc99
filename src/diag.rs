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
}

impl SourceFile {
    pub fn new(display: impl Into<String>, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            display: display.into(),
            text,
            line_starts,
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
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let col = self.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end.max(start));
        let width = self.text[start..end].chars().count().max(1);
        Location {
            file: self.display.clone(),
            line: line_index + 1,
            col,
            line_text: line_text.to_string(),
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

    /// A location known only by line and column (e.g. from a YAML parser).
    pub fn from_line_col(file: &str, text: &str, line: usize, col: usize) -> Location {
        let line_text = text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .to_string();
        Location {
            file: file.to_string(),
            line,
            col,
            line_text,
            width: 1,
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
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("nmae", ["name", "namespace"]), Some("name"));
        assert_eq!(did_you_mean("zzz", ["name", "namespace"]), None);
    }
}
