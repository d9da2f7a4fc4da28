//! What is backed up: consistent snapshots of SQLite databases, and plain files and folders.

pub mod files;
mod pages;
pub mod sqlite;
