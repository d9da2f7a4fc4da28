//! `litevault restore`: the command's options translated into the restore engine's
//! (`crate::restore`), which does the work.

use anyhow::Result;

use crate::cli::RestoreArgs;
use crate::config::Settings;
use crate::progress::Progress;
use crate::restore::{Options, Report, Target};

pub fn run(
    settings: &Settings,
    args: &RestoreArgs,
    progress: &dyn Progress,
    hook_env: &[(String, String)],
) -> Result<Report> {
    let target = match &args.to {
        Some(dir) => Target::Folder {
            dir: dir.clone(),
            deep: args.deep,
            same_owner: args.same_owner,
        },
        None => Target::InPlace {
            safety_backup: !args.no_safety_backup,
            force: args.force,
            wait: args.wait,
        },
    };
    let options = Options {
        id: args.id.clone(),
        dest: args.dest.clone(),
        only: args.only.clone(),
        target,
    };
    crate::restore::run(settings, &options, progress, hook_env)
}
