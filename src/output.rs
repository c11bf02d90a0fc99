//! Terminal presentation: colour only when writing to a terminal, and never when
//! `NO_COLOR` is set or `--no-color` is given.

use std::io::IsTerminal;

/// Whether to paint output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// The style for stdout given the `--no-color` flag.
    pub fn for_stdout(no_color_flag: bool) -> Style {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color_flag && !no_color_env && std::io::stdout().is_terminal(),
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

// Standard output and standard error. A closed pipe (`dcm plan | head -1`) is not an
// error: output stops quietly and the run goes on to its end (what it writes to a cluster
// or the state is never cut short by a reader going away). Any other failure to write to
// standard output is reported once, at the end (`stdout_failure`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Writes to standard output (see `out!` and `outln!`).
pub fn write_out(args: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        stdout_failed(e);
    }
}

/// Standard output written in large pieces: what a long document (a plan of 100k
/// changes) is rendered into, so that it is never held whole in memory nor written a line
/// per system call. Whatever is left is written when it is dropped. Writing to it fails
/// once standard output is closed, which stops the rendering early.
#[derive(Default)]
pub struct OutChunks {
    buf: Vec<u8>,
}

impl OutChunks {
    const PIECE: usize = 1 << 16;

    fn push(&mut self, bytes: &[u8]) -> bool {
        if STDOUT_CLOSED.load(Ordering::SeqCst) {
            return false;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::PIECE {
            self.write_buffered();
        }
        true
    }

    fn write_buffered(&mut self) {
        if !self.buf.is_empty() && !STDOUT_CLOSED.load(Ordering::SeqCst) {
            if let Err(e) = std::io::stdout().lock().write_all(&self.buf) {
                stdout_failed(e);
            }
        }
        self.buf.clear();
    }
}

impl std::fmt::Write for OutChunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes()).then_some(()).ok_or(std::fmt::Error)
    }
}

impl std::io::Write for OutChunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.push(bytes) {
            Ok(bytes.len())
        } else {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_buffered();
        Ok(())
    }
}

impl Drop for OutChunks {
    fn drop(&mut self) {
        self.write_buffered();
    }
}

/// Flushes standard output, with the same care as `write_out`.
pub fn flush_out() {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().flush() {
        stdout_failed(e);
    }
}

fn stdout_failed(e: std::io::Error) {
    STDOUT_CLOSED.store(true, Ordering::SeqCst);
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        if let Ok(mut f) = STDOUT_FAILURE.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Why standard output could not be written, when that was not a reader going away.
pub fn stdout_failure() -> Option<String> {
    STDOUT_FAILURE.lock().ok().and_then(|f| f.clone())
}

/// Writes to standard error; a closed or failing standard error is ignored (there is
/// nowhere left to say so).
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Writes one line to standard error.
pub fn error_line(line: &str) {
    write_err(format_args!("{line}\n"));
}

/// `print!` that stops quietly when standard output is closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}

/// `println!` that stops quietly when standard output is closed.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}
