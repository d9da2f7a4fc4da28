//! `litevault check`: the config is valid, the keys load, and each destination accepts a write,
//! gives the same bytes back, lists it and deletes it.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cli::CheckArgs;
use crate::config::Settings;
use crate::exit::Exit;
use crate::storage::Destination;

#[derive(Debug, Serialize)]
pub struct Report {
    pub config: String,
    pub keys: Probe,
    pub destinations: Vec<Probe>,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub seconds: f64,
}

impl Report {
    pub fn exit(&self) -> Exit {
        if self.keys.ok && self.destinations.iter().all(|d| d.ok) {
            Exit::Success
        } else {
            Exit::Failure
        }
    }
}

pub fn run(settings: &Settings, args: &CheckArgs) -> Result<Report> {
    let keys = timed("keys", || keys(settings));
    let mut destinations = Vec::new();
    for cfg in settings.select_destinations(&args.dest)? {
        destinations.push(timed(&cfg.name, || {
            let dest = super::open_destination(settings, cfg)?;
            probe(&dest)
        }));
    }
    Ok(Report {
        config: settings.config_path.display().to_string(),
        keys,
        destinations,
    })
}

fn timed(name: &str, f: impl FnOnce() -> Result<String>) -> Probe {
    let start = Instant::now();
    let (ok, detail) = match f() {
        Ok(detail) => (true, detail),
        Err(e) => (false, crate::exit::describe(&e)),
    };
    Probe {
        name: name.to_string(),
        ok,
        detail,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn keys(settings: &Settings) -> Result<String> {
    let Some(enc) = &settings.encryption else {
        return Ok("no [encryption]: backups are stored unencrypted".into());
    };
    crate::crypto::Sealer::load(enc)?;
    if enc.identity_file.is_some() || enc.passphrase_file.is_some() {
        crate::crypto::Opener::load(enc)?;
        Ok("recipients and identity load".into())
    } else {
        Ok("recipients load; no identity here (restore and verify need one)".into())
    }
}

/// List, write, read back, list, delete and confirm the deletion of a small probe object.
fn probe(dest: &Destination) -> Result<String> {
    let name = format!("check-{}.probe", crate::state::nonce());
    let body: Vec<u8> = (0..4096u32).flat_map(|i| i.to_le_bytes()).collect();
    // List first, as a backup does: a missing bucket must not be created by a lenient server.
    dest.list("")?;
    dest.put(&name, body.clone())?;
    let outcome = (|| {
        if dest.read_small(&name, 1 << 20)? != body {
            bail!("the probe read back differs from what was written");
        }
        if !dest.list("")?.iter().any(|o| o.name == name) {
            bail!("the probe was written but is not listed");
        }
        Ok(())
    })();
    dest.delete(&name)?;
    outcome?;
    if dest.size(&name)?.is_some() {
        bail!("the probe is still there after deleting it");
    }
    Ok(format!(
        "{}: write, read, list and delete work",
        dest.display
    ))
}
