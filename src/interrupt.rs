//! Ctrl-C and SIGTERM: the first one asks the run to stop at the next safe point (an upload is
//! aborted, a restore stops before the next replacement, the run is recorded as interrupted and
//! litevault exits 130); a second one ends the process at once.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::exit::{Exit, Fault};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers; call once, early in `main`.
pub fn install() {
    let flag = FLAG
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Order matters: the shutdown is armed first, so it fires only on a second signal.
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            Exit::Interrupted.code() as i32,
            flag.clone(),
        );
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
}

pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// For `Read`/`Write` adapters on the hot path: an error once a stop was asked for.
pub fn check_io() -> io::Result<()> {
    if requested() {
        // Not ErrorKind::Interrupted: io::copy and read_exact retry on that kind.
        return Err(io::Error::other(Fault::new(
            Exit::Interrupted,
            "interrupted",
        )));
    }
    Ok(())
}

/// For steps between stages.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        return Err(Fault::new(
            Exit::Interrupted,
            "interrupted by a signal; nothing half-done was left visible",
        )
        .into());
    }
    Ok(())
}
