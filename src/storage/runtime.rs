//! The tokio runtime OpenDAL's blocking API runs on. litevault itself is synchronous; the runtime
//! exists only so OpenDAL's async services can be driven from plain threads.
//!
//! It is shut down explicitly at the end of a run: background tasks (an SFTP session's, for
//! one) are dropped then, so the ssh master process OpenDAL's SFTP transport started is told to
//! exit instead of outliving litevault.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// A handle to the runtime, starting it on first use.
pub fn handle() -> Handle {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("litevault-io")
            .enable_all()
            .build()
            .expect("starting the I/O runtime")
    })
    .handle()
    .clone()
}

/// Stop the runtime, dropping every task it still holds. Call once no operator is in use.
pub fn shutdown() {
    let taken = RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rt) = taken {
        rt.shutdown_timeout(Duration::from_secs(5));
    }
}
