//! The spool: where a backup's archive is written as it is built, so the uploads read it at
//! their own pace and the snapshots never wait for a destination (see `fanout`). It lives in a
//! scratch folder of `state_dir/tmp`, removed when the run ends (or by the next run, if this one
//! was killed), and is used only when the state folder has room for the whole archive.

use anyhow::{Context, Result};

use crate::state::StateDir;

/// A spool for the archive in `state_dir/tmp` (see `storage::fanout`), when the state folder
/// has room for the whole archive; otherwise none, and a warning that says what that costs.
pub fn open(
    state: &StateDir,
    estimate: u64,
) -> (
    Option<crate::state::Scratch>,
    Option<std::fs::File>,
    Option<String>,
) {
    // The layers' own overhead: tar headers, zstd frames on incompressible data, age's tags.
    let need = estimate + estimate / 32 + (16 << 20);
    let opened = (|| -> Result<(crate::state::Scratch, std::fs::File)> {
        let free = crate::place::free_space(&state.path)?;
        if free < need {
            anyhow::bail!(
                "{} has {} free, less than the archive may need ({})",
                state.path.display(),
                crate::ui::bytes(free),
                crate::ui::bytes(need)
            );
        }
        let dir = state.scratch("spool")?;
        let path = dir.path.join("archive");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((dir, file))
    })();
    match opened {
        Ok((dir, file)) => (Some(dir), Some(file), None),
        Err(e) => (
            None,
            None,
            Some(format!(
                "the archive is not spooled in state_dir ({e:#}): it streams straight to the destinations, so while a slow destination uploads, the snapshots stay open and the server's writers may wait; free space there"
            )),
        ),
    }
}
