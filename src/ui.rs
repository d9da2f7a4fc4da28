//! The only module that talks to the person: progress bars on a terminal, one plain line per
//! result under cron, nothing with `--quiet`, one JSON document with `--json`. Errors always go
//! to stderr with their whole context chain and a hint.
//!
//! Every line of human text leaves the process through [`Ui`]'s writer (`write_line`), which
//! takes one line at a time, escapes every control character in it (a newline included, see
//! [`escape`]) and ends it with the one newline litevault writes. A message, warning or error is
//! therefore always one line on the terminal, whatever ids, names or paths it embeds; tables are
//! built here, line by line, from fields wrapped in [`Escaped`]. Writing never panics: a closed
//! or broken stderr is ignored (there is nowhere left to complain), and stdout's errors are
//! ignored by single lines and returned by whole reports, where a broken pipe ends the run
//! quietly (see `exit::classify`).

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::progress::{Progress, Silent};

mod escape;

pub use escape::{escape, is_unsafe, Escaped};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Human,
    Quiet,
    Json,
}

pub struct Ui {
    pub mode: Mode,
    terminal: bool,
    /// A JSON document went to stdout: a failure after it adds none (one document per run).
    json_written: std::cell::Cell<bool>,
}

impl Ui {
    pub fn new(quiet: bool, json: bool) -> Ui {
        let mode = if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else {
            Mode::Human
        };
        Ui {
            mode,
            terminal: io::stderr().is_terminal(),
            json_written: std::cell::Cell::new(false),
        }
    }

    /// A bar on a terminal; nothing otherwise (cron mail must not fill with redraws). indicatif
    /// draws it to stderr itself, dropping its write errors (a terminal gone mid-run is no
    /// panic); its labels, a source name or a backup id, are escaped here.
    pub fn progress(&self, label: &str) -> Box<dyn Progress> {
        if self.mode == Mode::Human && self.terminal {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(bar_style());
            bar.set_prefix(escape(label).into_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            Box::new(Bar(bar))
        } else {
            Box::new(Silent)
        }
    }

    /// A line for people (suppressed by --quiet and --json).
    pub fn say(&self, line: &str) {
        if self.mode == Mode::Human {
            let _ = write_line(&mut io::stdout().lock(), "", line);
        }
    }

    /// Several lines for people, written at once; the error (a broken pipe) is the caller's.
    pub fn say_all(&self, lines: &[String]) -> io::Result<()> {
        if self.mode == Mode::Human {
            let mut out = io::stdout().lock();
            for line in lines {
                write_line(&mut out, "", line)?;
            }
            out.flush()?;
        }
        Ok(())
    }

    /// The one JSON document of a run; its strings hold no raw control character.
    pub fn json<T: Serialize>(&self, doc: &T) -> io::Result<()> {
        if self.mode == Mode::Json {
            self.json_written.set(true);
            let mut out = io::stdout().lock();
            escape::write_json(&mut out, doc)?;
            writeln!(out)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Generated text for a program rather than a person (a shell completion script), written
    /// to stdout as it is, in every mode.
    pub fn document(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// The product of a command that makes something (a key's public half): stdout in every
    /// mode but --json, where it is inside the document.
    pub fn result(&self, line: &str) {
        if self.mode != Mode::Json {
            let _ = write_line(&mut io::stdout().lock(), "", line);
        }
    }

    /// A remark for a person at a terminal, kept off stdout so that `$(...)` captures only the
    /// result; silent with --quiet and --json.
    pub fn remark(&self, line: &str) {
        if self.mode == Mode::Human {
            to_stderr("", line);
        }
    }

    /// A line that must be seen even with --quiet (how to undo what was just done): stdout for
    /// people, stderr under --quiet, inside the document with --json.
    pub fn notice(&self, line: &str) {
        match self.mode {
            Mode::Human => self.say(line),
            Mode::Quiet => to_stderr("", line),
            Mode::Json => {}
        }
    }

    /// Warnings go to stderr in every mode, --quiet included: only success is quiet, and a
    /// warning is something cron's mail should carry.
    pub fn warn(&self, line: &str) {
        to_stderr("warning: ", line);
    }

    /// A failure: always printed, to stderr.
    pub fn error(&self, line: &str) {
        to_stderr("error: ", line);
    }

    /// What to do about the errors just printed; shown even with --quiet, like them.
    pub fn hint(&self, line: &str) {
        to_stderr("hint: ", line);
    }

    /// The error that ended the run, on one line with its context chain, and its hint; with
    /// --json also as the run's one document on stdout (unless one was already written),
    /// `{"error": ..., "exit": N, "hint": ...}`, so a script that reads stdout sees it.
    pub fn fatal(&self, err: &anyhow::Error, exit: crate::exit::Exit) {
        let message = format!("{err:#}");
        let hint = crate::exit::hint(err);
        to_stderr("error: ", &message);
        if let Some(hint) = hint {
            to_stderr("hint: ", hint);
        }
        if self.mode == Mode::Json && !self.json_written.get() {
            #[derive(Serialize)]
            struct Failure<'a> {
                error: &'a str,
                exit: u8,
                hint: Option<&'a str>,
            }
            let _ = self.json(&Failure {
                error: &message,
                exit: exit.code(),
                hint,
            });
        }
    }
}

impl Ui {
    /// What clap has to say about the command line (help, version, a usage error), and the exit
    /// code it calls for. Help and version go out as clap writes them, to stdout. An error
    /// echoes what was typed: those values are escaped inside clap's message (a newline in one
    /// cannot start a line), and the message goes to stderr line by line through the escaping
    /// writer, plain, not coloured. Neither panics on a closed stream.
    pub fn command_line(mut err: clap::Error) -> u8 {
        use clap::error::ContextValue;
        if err.use_stderr() {
            let typed: Vec<_> = err
                .context()
                .filter_map(|(kind, value)| match value {
                    ContextValue::String(s) => {
                        Some((kind, ContextValue::String(escape(s).into_owned())))
                    }
                    ContextValue::Strings(v) => Some((
                        kind,
                        ContextValue::Strings(v.iter().map(|s| escape(s).into_owned()).collect()),
                    )),
                    _ => None,
                })
                .collect();
            for (kind, value) in typed {
                err.insert(kind, value);
            }
            for line in err.render().to_string().lines() {
                to_stderr("", line);
            }
        } else {
            let _ = err.print();
        }
        u8::try_from(err.exit_code()).unwrap_or(2)
    }
}

/// Where every line of human text leaves the process: `prefix` (litevault's own, a literal)
/// and `line` with every control character in it escaped, newlines included, then the newline
/// that ends it. One call, one line on the terminal.
fn write_line(out: &mut dyn Write, prefix: &str, line: &str) -> io::Result<()> {
    writeln!(out, "{prefix}{}", escape(line))
}

/// A line to stderr. Its write errors are dropped: with stderr closed or its reader gone there
/// is nobody to tell, and the exit code already says what happened.
fn to_stderr(prefix: &str, line: &str) {
    let mut err = io::stderr().lock();
    let _ = write_line(&mut err, prefix, line);
    let _ = err.flush();
}

struct Bar(ProgressBar);

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {msg} {spinner} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Progress for Bar {
    fn stage(&self, label: &str) {
        // A source name or a backup id: drawn by indicatif, not through `write_line`.
        self.0.set_message(escape(label).into_owned());
    }
    fn phase(&self, label: &str, total: u64) {
        self.0.set_style(bar_style());
        self.0.reset();
        self.0.set_length(total);
        self.stage(label);
    }
    fn waiting(&self, label: &str) {
        self.0.set_style(waiting_style());
        self.0.reset();
        self.stage(label);
    }
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The name of the user this process acts as (its effective uid), from /etc/passwd, with the
/// uid: "nobody (uid 65534)"; just the uid when the name cannot be found.
pub fn effective_user() -> String {
    let uid = rustix::process::geteuid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration for people: the two largest units, never nanoseconds ("13s 412ms" becomes "13s",
/// "1h 5m 3s" becomes "1h 5m").
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    if secs < 60 {
        return format!("{secs}s");
    }
    let rounded = Duration::from_secs(if secs < 3600 {
        secs
    } else if secs < 86_400 {
        secs / 60 * 60
    } else {
        secs / 3600 * 3600
    });
    humantime::format_duration(rounded).to_string()
}

pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// "1 source", "3 sources".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn durations_read_well() {
        use std::time::Duration;
        let d = |s: u64, n: u32| super::duration(Duration::new(s, n));
        assert_eq!(d(13, 412_877_005), "13s");
        assert_eq!(d(0, 250_000_000), "250ms");
        assert_eq!(d(125, 5), "2m 5s");
        assert_eq!(d(3 * 3600 + 5 * 60 + 7, 0), "3h 5m");
        assert_eq!(d(2 * 86_400 + 3 * 3600 + 59, 0), "2days 3h");
    }
}
