//! How stages report progress without printing: they call a [`Progress`], and only the UI's
//! implementation turns that into a bar (or nothing, under cron).

pub trait Progress: Sync {
    /// A new phase begins (a source being read, an archive being downloaded).
    fn stage(&self, _label: &str) {}
    /// Bytes done in the current run; the total is a hint for a bar.
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// For stages run where nobody is watching (tests, cleanup, nested steps).
pub struct Silent;

impl Progress for Silent {}
