//! Interruption: SIGINT (Ctrl-C) or SIGTERM during an apply stops new work; the work in
//! flight finishes or times out, the state (written after every object) records it, and
//! the command reports what was done and what was not and exits 130. A second signal
//! stops at once (still exit 130; an object being written is then recorded as pending,
//! so the next plan looks before it leaps).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit code of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const EXIT_CODE: u8 = 130;

/// Whether a run was asked to stop. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Asks the run to stop starting new work.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Raises `interrupt` on the first SIGINT or SIGTERM and exits at once (130) on the
/// second. Runs until the task is dropped; without signal support it waits forever.
pub async fn watch(interrupt: Interrupt) {
    let mut signals = Signals::new();
    loop {
        if !signals.next().await {
            return std::future::pending().await;
        }
        if interrupt.raised() {
            crate::output::error_line(
                "Interrupted again: stopping now. The state records what was done; run the same command again.",
            );
            std::process::exit(i32::from(EXIT_CODE));
        }
        interrupt.raise();
        crate::output::error_line(
            "\nInterrupted: starting nothing new; waiting for the changes in flight to finish (interrupt again to stop at once).",
        );
    }
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix).
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(i), Ok(t)) => Some((i, t)),
            _ => None,
        };
        Signals { streams }
    }

    #[cfg(not(unix))]
    fn new() -> Signals {
        Signals {}
    }

    /// Waits for the next signal; false when signals cannot be listened to.
    #[cfg(unix)]
    async fn next(&mut self) -> bool {
        let Some((int, term)) = &mut self.streams else {
            return false;
        };
        tokio::select! {
            got = int.recv() => got.is_some(),
            got = term.recv() => got.is_some(),
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> bool {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
