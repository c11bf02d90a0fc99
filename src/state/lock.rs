//! The state lock: one writer at a time.
//!
//! `<state>.lock` holds who has the lock (id, operation, user, pid, host, time), and the
//! holder keeps an OS file lock on it. The OS releases that lock when the holder exits,
//! however it exits, so a run killed with SIGKILL never leaves the state locked; the
//! record it leaves behind is ignored. `force-unlock` removes the record and file of a
//! holder that is still running (e.g. hung), which lets new runs proceed.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub operation: String,
    pub who: String,
    pub pid: u32,
    pub host: String,
    pub created: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the state is locked: {operation} by {who} (pid {pid} on {host}) since {created}, lock ID {id}\n  = help: wait for that run to finish; if it is stuck, stop it or run `dcm force-unlock {id}`", operation = .0.operation, who = .0.who, pid = .0.pid, host = .0.host, created = .0.created, id = .0.id)]
    Held(Box<LockInfo>),
    #[error("the state is still locked after waiting {waited} (--lock-timeout): {operation} by {who} (pid {pid} on {host}) since {created}, lock ID {id}\n  = help: wait for that run to finish, or give it longer with --lock-timeout; if it is stuck, stop it or run `dcm force-unlock {id}`", waited = humantime::format_duration(*.1), operation = .0.operation, who = .0.who, pid = .0.pid, host = .0.host, created = .0.created, id = .0.id)]
    StillHeld(Box<LockInfo>, std::time::Duration),
    #[error("cannot lock the state at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the state is not locked; nothing to unlock")]
    NotLocked,
    #[error("lock ID `{given}` does not match the lock held now (ID {held})")]
    WrongId { given: String, held: String },
}

pub fn lock_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A held lock; released when dropped.
pub struct Lock {
    file: File,
    path: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> LockError {
    LockError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_info(file: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Who this run is, for a lock it takes for `operation`.
pub(crate) fn new_info(operation: &str) -> LockInfo {
    LockInfo {
        id: new_id(),
        operation: operation.to_string(),
        who: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        pid: std::process::id(),
        host: host_name(),
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    }
}

impl Lock {
    /// Takes the lock, waiting up to `timeout` (retrying every quarter second) while
    /// another run holds it.
    pub fn acquire_waiting(
        state_path: &Path,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<Lock, LockError> {
        let start = std::time::Instant::now();
        let mut told = false;
        loop {
            match Lock::acquire(state_path, operation) {
                Err(LockError::Held(info)) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(if timeout.is_zero() {
                            LockError::Held(info)
                        } else {
                            LockError::StillHeld(info, timeout)
                        });
                    }
                    if !told {
                        crate::errln!(
                            "waiting for the state lock: {} by {} (pid {} on {}) since {} holds it (--lock-timeout {})",
                            info.operation,
                            info.who,
                            info.pid,
                            info.host,
                            info.created,
                            humantime::format_duration(timeout)
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(250).min(timeout - waited));
                }
                other => return other,
            }
        }
    }

    /// Takes the lock of the state at `state_path`, or says who holds it.
    pub fn acquire(state_path: &Path, operation: &str) -> Result<Lock, LockError> {
        let path = lock_path(state_path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        // Each retry means the file was replaced under us; a few are plenty unless
        // something keeps replacing it, which is reported rather than spun on.
        for _ in 0..20 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let info = read_info(&mut file).unwrap_or(LockInfo {
                        id: "unknown".into(),
                        operation: "another run".into(),
                        who: "unknown".into(),
                        pid: 0,
                        host: "unknown".into(),
                        created: "unknown".into(),
                    });
                    return Err(LockError::Held(Box::new(info)));
                }
                Err(TryLockError::Error(e)) => return Err(io(&path, e)),
            }
            // The file may have been removed (force-unlock, or a release) between open and
            // lock; then this lock guards nothing, and we try again on the new file.
            if !same_file(&file, &path) {
                continue;
            }
            let info = new_info(operation);
            let text = serde_json::to_string_pretty(&info).unwrap_or_default();
            file.set_len(0).map_err(|e| io(&path, e))?;
            file.rewind().map_err(|e| io(&path, e))?;
            file.write_all(text.as_bytes()).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
            return Ok(Lock { file, path });
        }
        Err(io(
            &path,
            std::io::Error::other("the lock file keeps being replaced while dcm tries to lock it"),
        ))
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// A fresh random id (16 hex digits).
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Clear the record, then release. The file stays: removing it would race with a
        // run that has opened it and is about to lock it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
        let _ = &self.path;
    }
}

/// Removes the lock with id `id` of the state at `state_path`, whoever holds it.
pub fn force_unlock(state_path: &Path, id: &str) -> Result<LockInfo, LockError> {
    let path = lock_path(state_path);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LockError::NotLocked),
        Err(e) => return Err(io(&path, e)),
    };
    let held = match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(e)) => return Err(io(&path, e)),
    };
    let info = read_info(&mut file)
        .filter(|_| held)
        .ok_or(LockError::NotLocked)?;
    if info.id != id {
        return Err(LockError::WrongId {
            given: id.to_string(),
            held: info.id,
        });
    }
    std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dcm.state.json");
        let first = Lock::acquire(&state, "apply").unwrap();
        let err = Lock::acquire(&state, "apply").err().unwrap();
        let LockError::Held(info) = &err else {
            panic!("{err}")
        };
        assert_eq!(info.pid, std::process::id());
        assert!(err
            .to_string()
            .contains(&format!("dcm force-unlock {}", info.id)));
        let id = info.id.clone();
        assert!(matches!(
            force_unlock(&state, "nope"),
            Err(LockError::WrongId { .. })
        ));
        force_unlock(&state, &id).unwrap();
        // A new run gets a lock even though the old holder still has its file open.
        let second = Lock::acquire(&state, "apply").unwrap();
        drop(first);
        drop(second);
        assert!(matches!(
            force_unlock(&state, &id),
            Err(LockError::NotLocked)
        ));
        Lock::acquire(&state, "apply").unwrap();
    }
}
