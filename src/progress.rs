//! How stages report progress without printing: they call a [`Progress`], and only the UI's
//! implementation turns that into a bar (or nothing, under cron).

pub trait Progress: Sync {
    /// A new phase begins (a source being read, an archive being downloaded).
    fn stage(&self, _label: &str) {}
    /// Bytes done in the current run; the total is a hint for a bar.
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
    /// A phase of its own, counted from zero to `total` bytes under `label` ("download ID from
    /// DEST", "copy ID ..."): one bar per phase, never one running on past its total.
    fn phase(&self, label: &str, total: u64) {
        self.stage(label);
        self.set_total(total);
    }
    /// A phase whose size is not known in bytes (the checks after an unpacking): labelled, with
    /// the time it has taken so far.
    fn waiting(&self, label: &str) {
        self.stage(label);
    }
}

/// For stages run where nobody is watching (tests, cleanup, nested steps).
pub struct Silent;

impl Progress for Silent {}
