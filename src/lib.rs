//! litevault: consistent backups of live SQLite stores and config files, in an open format.
//!
//! The road of a backup: `config` (validated `Settings`) -> `state` (lock) -> `source` (snapshots)
//! -> `archive` (tar -> zstd|gzip -> age, hashed) -> `storage` (OpenDAL, one upload per
//! destination) -> `catalog` (sidecar last: visible only when complete). Restore is the same road
//! backwards through the `restore` engine; `incremental` holds what makes a backup store only
//! the changed pages. `commands` orchestrate these; `ui` is the only module that prints.
//! ARCHITECTURE.md has the whole map and the layers.
//!
//! - `cli`: clap definitions only.          - `config`: the TOML file -> `Settings`.
//! - `exit`: exit codes and error kinds.     - `crypto`: age recipients and identities.
//! - `retention`: the pure prune policy.     - `progress`: how stages report progress.
//! - `docs`: completions and man pages.      - `app`: the table of commands.
//! - `journal`: the execution store, metrics. - `hooks`: maintenance and notification commands.
//! - `runner`: a run's life around any command: config, journal, retries, hooks, metrics, and
//!   its report through `ui`.
//! - `trust`: signing sidecars (SSHSIG) and judging them against the trusted signers.
//! - `verified`: each backup's latest verification, what `verify --sample` reads next, coverage.

pub mod app;
pub mod archive;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod docs;
pub mod exit;
pub mod hooks;
pub mod incremental;
pub mod interrupt;
pub mod journal;
pub mod owner;
pub mod place;
pub mod progress;
pub mod restore;
pub mod retention;
pub mod runner;
pub mod secret_file;
pub mod source;
pub mod state;
pub mod storage;
pub mod trust;
pub mod ui;
pub mod verified;
pub mod vocabulary;
