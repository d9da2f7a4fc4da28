//! Integration tests: the real `litevault` binary against real SQLite files, real tools (`age`,
//! `zstd`, `gzip`, `tar`, `b3sum`) and, for remote destinations, real servers on 127.0.0.1.
//! One test binary with modules, so the harness is built once.

mod harness;

mod as_of;
mod backup;
mod bad_input;
mod bigdir;
mod chaos;
mod cli;
mod compat;
mod copy;
mod credentials;
mod cron;
mod damaged;
mod faultproxy;
mod faults;
mod first_hour;
mod fleet;
mod format;
mod hostile;
mod in_place;
mod incremental;
mod listing;
mod metadata;
mod nothing_lost;
mod object_lock;
mod output;
mod owners;
mod package;
mod parallel_download;
mod plugin;
mod prune;
mod readme;
mod rekey;

mod remote;
mod requests;
mod restore_checks;
mod restore_modes;
mod restore_plan;
mod roles;
mod roots;
mod runs;
mod sequence;
mod servers;
mod show;
mod signals;
mod sources;
mod spool;
mod state_dir;
mod stats;
mod tmpfs;
mod trust;
mod verify_all;
mod verify_keys;
mod verify_sample;
