//! Behaviour on a terminal: colour, and the confirmation prompt. `script` (util-linux)
//! gives dcm a real pseudo-terminal.

use super::harness::Project;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs dcm under a pseudo-terminal, typing `input`. None when `script` is missing.
fn on_terminal(p: &Project, args: &str, input: &str, no_color_env: bool) -> Option<(i32, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "skipped: `script` (util-linux) is not installed, so no pseudo-terminal can be made"
        );
        return None;
    }
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_dcm"));
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .current_dir(p.dir.path())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if no_color_env {
        c.env("NO_COLOR", "1");
    }
    let mut child = c.spawn().ok()?;
    child.stdin.take()?.write_all(input.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn colour_only_on_a_terminal_and_no_color_wins() {
    let p = Project::two_clusters();
    let Some((code, painted)) = on_terminal(&p, "plan", "", false) else {
        return;
    };
    assert_eq!(code, 0);
    assert!(
        painted.contains("\x1b[32m+ apiVersion: v1\x1b[0m"),
        "{painted:?}"
    );
    let (_, env_off) = on_terminal(&p, "plan", "", true).unwrap();
    assert!(!env_off.contains('\x1b'), "{env_off:?}");
    let (_, flag_off) = on_terminal(&p, "plan --no-color", "", false).unwrap();
    assert!(!flag_off.contains('\x1b'), "{flag_off:?}");
    // Not a terminal: plain, even without NO_COLOR.
    let piped = p
        .command(&["plan"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&piped.stdout).contains('\x1b'));
}

#[test]
fn apply_asks_and_only_yes_approves() {
    let p = Project::two_clusters();
    let Some((code, out)) = on_terminal(&p, "apply --no-color", "no\n", false) else {
        return;
    };
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Only 'yes' will be accepted"), "{out}");
    assert!(
        out.contains("apply cancelled; nothing was changed"),
        "{out}"
    );
    assert!(!p.exists("out"));

    let (code, out) = on_terminal(&p, "apply --no-color", "yes\n", false).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Apply complete! Resources: 4 added"), "{out}");
}
