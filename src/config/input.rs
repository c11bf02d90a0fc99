//! Reading the files a desired-state file names (manifests, certificates, tokens).
//!
//! The desired-state file may come from anyone who can open a pull request, and dcm runs
//! with CI secrets around it. So a path in it must lead, after every symlink, to a regular
//! file inside the project (the config file's directory) or inside a directory given with
//! `--allow-path`; FIFOs, devices and directories are refused without being opened for
//! reading, and every file has a size limit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The size limit of a manifest (YAML) file.
pub const MANIFEST_LIMIT: u64 = 8 * 1024 * 1024;
/// The size limit of a PEM or token file.
pub const SMALL_FILE_LIMIT: u64 = 1024 * 1024;
/// The size limit of the desired-state file itself.
pub const CONFIG_LIMIT: u64 = 8 * 1024 * 1024;

static ALLOWED: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Sets the directories given with `--allow-path` (once, at start-up).
pub fn set_allowed_paths(dirs: Vec<PathBuf>) {
    let _ = ALLOWED.set(dirs);
}

fn allowed_paths() -> &'static [PathBuf] {
    ALLOWED.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Why a named file cannot be read. The messages never quote the file's content.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("`{written}`: {source}")]
    Io {
        written: String,
        source: std::io::Error,
    },
    #[error("`{written}` resolves to {resolved}, which is outside the project directory {root}")]
    Outside {
        written: String,
        resolved: String,
        root: String,
    },
    #[error("`{written}` is inside a `.git` directory, which dcm never reads")]
    Git { written: String },
    #[error("`{written}` is {what}, not a regular file")]
    NotRegular { written: String, what: &'static str },
    #[error("`{written}` is larger than {limit} bytes")]
    TooLarge { written: String, limit: u64 },
    #[error("`{written}` is not UTF-8 text")]
    NotText { written: String },
}

impl InputError {
    /// A hint for the user, when there is one.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            InputError::Outside { .. } => Some(
                "files must be under the config file's directory; pass `--allow-path DIR` to allow another directory",
            ),
            _ => None,
        }
    }
}

fn what(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading without blocking on a FIFO that took its place since it was
/// checked; the caller checks the opened file again.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(0o4000); // O_NONBLOCK
    }
    #[cfg(target_os = "macos")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(0x0004); // O_NONBLOCK
    }
    opts.open(path)
}

/// Reads a regular file of at most `limit` bytes as text. `written` names it in messages.
pub fn read_regular(path: &Path, written: &str, limit: u64) -> Result<String, InputError> {
    let io = |source| InputError::Io {
        written: written.to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(InputError::NotRegular {
            written: written.to_string(),
            what: what(&meta),
        });
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            written: written.to_string(),
            limit,
        });
    }
    let file = open_nonblocking(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(InputError::NotRegular {
            written: written.to_string(),
            what: what(&meta),
        });
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            written: written.to_string(),
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotText {
        written: written.to_string(),
    })
}

/// Reads the file a desired-state file names as `written`: relative to `base_dir`, it must
/// resolve (symlinks followed) to a regular file under `base_dir` or an `--allow-path`.
pub fn read_input(base_dir: &Path, written: &str, limit: u64) -> Result<String, InputError> {
    let joined = crate::diag::resolve_relative(base_dir, written);
    let io = |source| InputError::Io {
        written: written.to_string(),
        source,
    };
    let resolved = joined.canonicalize().map_err(io)?;
    let root = base_dir.canonicalize().map_err(io)?;
    let mut roots = vec![root.clone()];
    roots.extend(allowed_paths().iter().filter_map(|p| p.canonicalize().ok()));
    let Some(inside) = roots.iter().find_map(|r| resolved.strip_prefix(r).ok()) else {
        return Err(InputError::Outside {
            written: written.to_string(),
            resolved: resolved.display().to_string(),
            root: root.display().to_string(),
        });
    };
    if inside.components().any(|c| c.as_os_str() == ".git") {
        return Err(InputError::Git {
            written: written.to_string(),
        });
    }
    read_regular(&resolved, written, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_outside_devices_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("ok.yaml"), "a: 1\n").unwrap();
        assert_eq!(read_input(base, "ok.yaml", 100).unwrap(), "a: 1\n");
        let e = read_input(base, "/etc/hostname", 100).unwrap_err();
        assert!(
            matches!(e, InputError::Outside { .. } | InputError::Io { .. }),
            "{e}"
        );
        let e = read_input(base, "ok.yaml", 2).unwrap_err();
        assert!(matches!(e, InputError::TooLarge { .. }), "{e}");
        let e = read_regular(Path::new("/dev/zero"), "/dev/zero", 10).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        std::fs::create_dir(base.join("d")).unwrap();
        let e = read_input(base, "d", 10).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", base.join("link")).unwrap();
            let e = read_input(base, "link/hostname", 100).unwrap_err();
            assert!(
                matches!(e, InputError::Outside { .. } | InputError::Io { .. }),
                "{e}"
            );
        }
    }
}
