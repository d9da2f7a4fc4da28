//! Incremental backups: only the database pages that changed since the previous backup.
//!
//! The format. An incremental backup is an ordinary archive (same tar, compression, age,
//! manifest and sidecar) whose manifest says `kind: incremental` and names its `parent` and its
//! chain's `full` backup. Each database that changed is stored as `<name>-wal`, a valid SQLite
//! WAL file of the changed pages (`wal`); an unchanged one is not stored; files and folders are
//! stored whole, as in a full backup. Any stock `sqlite3` can apply a chain by hand (the README's
//! stock-tools recipe, which a test runs).
//!
//! The invariants:
//! - **What was stored is what is compared.** The page index (`pageindex`, in `state_dir`) holds
//!   the last stored snapshot's page hashes (`pagehash`: BLAKE3 chaining values, so the file's
//!   BLAKE3 costs no second pass). It moves forward only once the backup it describes is stored
//!   on every destination it went to, and a damaged index means a full backup, never a guess.
//! - **A backup builds only on a good parent.** The planner (`plan`) makes an incremental only
//!   when the parent the index names is listed, good (`catalog::standing`) and whole on every
//!   destination the backup goes to; otherwise a full backup, and it says why.
//! - **A chain is bounded.** `max_chain` links at most (`vocabulary::MAX_CHAIN` for any walk),
//!   and a full backup once the chain's full backup is `full_every` old.
//! - **A restore checks every link.** Each link's before- and after-hash per database are
//!   checked while the chain is rebuilt (`restore::rebuild`); chains are resolved and judged by
//!   the catalogue (`catalog::chains`), since a broken chain makes a backup not good.
//! - **The lock-byte page is never written**: the page at offset 1 GiB is never a frame.

pub mod pagehash;
pub mod pageindex;
pub mod plan;
pub mod wal;
