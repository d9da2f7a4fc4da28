//! Maintenance and notification hooks: shell commands run with the run's facts in `LITEVAULT_*`
//! environment variables, each bounded by a timeout.
//!
//! A hook that outlives its timeout is killed with its whole process group, so a hung
//! notification can never hang a backup. What a hook prints is captured (bounded) and quoted
//! when it fails.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Keep at most this much of a hook's output for the error message.
const OUTPUT_LIMIT: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub before_backup: Option<String>,
    pub after_backup: Option<String>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub before_restore: Option<String>,
    pub after_restore: Option<String>,
    pub timeout: Duration,
}

/// Run `command` with `sh -c` and the given environment; fail on a non-zero exit or a timeout.
pub fn run(name: &str, command: &str, env: &[(String, String)], timeout: Duration) -> Result<()> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LITEVAULT_HOOK", name)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("hook {name}: cannot start /bin/sh"))?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_LIMIT {
                    let cut = kept.len() - OUTPUT_LIMIT;
                    kept.drain(..cut);
                }
            }
            kept
        })
    })
    .collect();

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        let interrupted = crate::interrupt::requested();
        if interrupted || Instant::now() >= deadline {
            // The shell and everything it started: a pipe held by a grandchild would otherwise
            // keep the output readers waiting.
            let pgid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            if interrupted {
                crate::interrupt::check()?;
            }
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output: Vec<u8> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap_or_default())
        .collect();
    let output = String::from_utf8_lossy(&output).trim().to_string();
    let said = if output.is_empty() {
        String::new()
    } else {
        format!("; it printed: {output}")
    };
    match status {
        None => bail!(
            "hook {name} did not finish within {} and was killed{said}",
            crate::ui::duration(timeout)
        ),
        Some(s) if !s.success() => bail!("hook {name} failed ({s}){said}"),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_get_their_environment_and_failures_quote_the_output() {
        let env = vec![("LITEVAULT_STATUS".to_string(), "success".to_string())];
        run(
            "t",
            "test \"$LITEVAULT_STATUS\" = success && test \"$LITEVAULT_HOOK\" = t",
            &env,
            Duration::from_secs(5),
        )
        .unwrap();
        let err = run(
            "t",
            "echo disk full >&2; exit 3",
            &env,
            Duration::from_secs(5),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("disk full") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn a_hung_hook_is_killed_with_its_children() {
        let start = Instant::now();
        let err = run("t", "sleep 30 & sleep 30", &[], Duration::from_millis(300)).unwrap_err();
        assert!(format!("{err}").contains("did not finish"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the hook was not killed in time"
        );
    }
}
