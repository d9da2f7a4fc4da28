//! The process exit codes, in one place, and the error kinds that select them.
//!
//! Stages return `anyhow::Error`; where a failure has a meaning beyond "it failed" (bad config,
//! damaged data, another run holding the lock) the stage attaches a [`Fault`] somewhere in the
//! chain, and `main` maps the first `Fault` it finds to an exit code.

use std::fmt;

/// Every exit code litevault uses. The README's "Exit codes" table says the same, and a test
/// below holds it to [`Exit::ALL`] and [`Exit::meaning`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Partial = 3,
    Integrity = 4,
    Locked = 5,
    Interrupted = 130,
}

impl Exit {
    pub const ALL: [Exit; 7] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::Partial,
        Exit::Integrity,
        Exit::Locked,
        Exit::Interrupted,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The word the execution store, `history` and the hooks' `LITEVAULT_STATUS` use.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Failure => "failure",
            Exit::Usage => "usage",
            Exit::Partial => "partial",
            Exit::Integrity => "integrity",
            Exit::Locked => "locked",
            Exit::Interrupted => "interrupted",
        }
    }

    /// What the code means, as the README's table says it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Failure => "failure",
            Exit::Usage => "usage or configuration error",
            Exit::Partial => "partial: stored on some destinations only, or some deletions failed",
            Exit::Integrity => "integrity: a damaged, untrusted, foreign or broken-chain backup found (and left in place), or data that is corrupt, tampered with or cannot be decrypted; the same for every command",
            Exit::Locked => "locked: another run holds the lock on `state_dir`",
            Exit::Interrupted => "interrupted",
        }
    }

    /// The most serious of several outcomes (success when there are none): what a report made
    /// of many findings exits with. A signal ends everything; damage is what a person must see
    /// first, above a config to fix or a lock to wait for; a plain failure outranks a partial
    /// success. This order is the one place that says so: reports fold their findings with it.
    pub fn worst(exits: impl IntoIterator<Item = Exit>) -> Exit {
        let severity = |e: &Exit| match e {
            Exit::Success => 0,
            Exit::Partial => 1,
            Exit::Failure => 2,
            Exit::Locked => 3,
            Exit::Usage => 4,
            Exit::Integrity => 5,
            Exit::Interrupted => 6,
        };
        exits
            .into_iter()
            .max_by_key(severity)
            .unwrap_or(Exit::Success)
    }
}

/// A failure with a meaning: the exit code it maps to and, optionally, what to do about it.
#[derive(Debug)]
pub struct Fault {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl Fault {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Fault {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fault {}

/// Shorthands that read well at the point of failure: `return Err(config("...").into())`.
pub fn config(message: impl Into<String>) -> Fault {
    Fault::new(Exit::Usage, message)
}

pub fn integrity(message: impl Into<String>) -> Fault {
    Fault::new(Exit::Integrity, message)
}

/// The exit code for an error: the first [`Fault`] in its chain decides; a broken pipe is not a
/// failure of litevault's (`litevault list | head` must stay quiet); anything else is a failure.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(fault) = fault_in(cause) {
            return fault.exit;
        }
    }
    if is_broken_pipe(err) {
        return Exit::Success;
    }
    Exit::Failure
}

/// A `Fault` itself, or one carried inside an `io::Error` (from a `Read`/`Write` adapter).
pub fn fault_in<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a Fault> {
    cause.downcast_ref::<Fault>().or_else(|| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Fault>())
    })
}

pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error carried through `io::Error` (out of a `Read`/`Write` adapter) as a [`Fault`], so
/// its meaning (an interruption, damage) and hint survive the layers above.
pub fn into_io(err: anyhow::Error) -> std::io::Error {
    let mut fault = Fault::new(classify(&err), format!("{err:#}"));
    if let Some(h) = hint(&err) {
        fault = fault.hint(h);
    }
    std::io::Error::other(fault)
}

/// A full disk, a quota or a read-only filesystem, met while writing locally: a problem of this
/// machine, never a finding about a backup.
pub fn local_trouble(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|code| matches!(code, 28 | 122 | 30)) // ENOSPC, EDQUOT, EROFS
    })
}

/// The error on one line with its context chain, and its hint when it has one: for reports that
/// carry an error as data (one destination's outcome) rather than ending the run.
pub fn describe(err: &anyhow::Error) -> String {
    match hint(err) {
        Some(h) => format!("{err:#} (hint: {h})"),
        None => format!("{err:#}"),
    }
}

/// The hint attached to the first [`Fault`] in the chain that has one.
pub fn hint(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .filter_map(fault_in)
        .find_map(|f| f.hint.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_are_the_documented_numbers() {
        let table = [
            (Exit::Success, 0),
            (Exit::Failure, 1),
            (Exit::Usage, 2),
            (Exit::Partial, 3),
            (Exit::Integrity, 4),
            (Exit::Locked, 5),
            (Exit::Interrupted, 130),
        ];
        for (exit, code) in table {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }

    /// The README's table, row by row, is `Exit::ALL` with each code's meaning.
    #[test]
    fn the_readme_table_is_this_enum() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n### Exit codes\n")
            .nth(1)
            .expect("README.md has an \"Exit codes\" section");
        let rows: Vec<(String, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // the header and its rule
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
                assert_eq!(cells.len(), 2, "a row of two cells: {l}");
                (cells[0].trim().to_string(), cells[1].trim().to_string())
            })
            .collect();
        let ours: Vec<(String, String)> = Exit::ALL
            .iter()
            .map(|e| (e.code().to_string(), e.meaning().to_string()))
            .collect();
        assert_eq!(
            rows, ours,
            "README.md's Exit codes table against src/exit.rs"
        );
    }

    #[test]
    fn the_worst_outcome_decides() {
        use Exit::*;
        assert_eq!(Exit::worst([]), Success);
        assert_eq!(Exit::worst([Success, Partial]), Partial);
        assert_eq!(Exit::worst([Partial, Failure, Success]), Failure);
        assert_eq!(Exit::worst([Failure, Integrity, Partial]), Integrity);
        assert_eq!(Exit::worst([Usage, Failure]), Usage);
        assert_eq!(Exit::worst([Integrity, Interrupted]), Interrupted);
        // Every code has its place: none is lost in a fold.
        for e in Exit::ALL {
            assert_eq!(Exit::worst([e]), e);
            assert_eq!(Exit::worst([Success, e]), e);
        }
    }

    #[test]
    fn a_fault_deep_in_the_chain_decides() {
        let err = anyhow::Error::new(integrity("hash mismatch"))
            .context("reading auth.db")
            .context("verifying backup X");
        assert_eq!(classify(&err), Exit::Integrity);
    }

    #[test]
    fn plain_errors_are_failures_and_broken_pipes_are_not() {
        let plain = anyhow::anyhow!("boom");
        assert_eq!(classify(&plain), Exit::Failure);
        let pipe: anyhow::Result<()> =
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing list");
        assert_eq!(classify(&pipe.unwrap_err()), Exit::Success);
    }

    #[test]
    fn hint_is_found_through_context() {
        let err = anyhow::Error::new(config("bad key").hint("fix it")).context("loading config");
        assert_eq!(hint(&err), Some("fix it"));
    }
}
