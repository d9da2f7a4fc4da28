//! The one tokio runtime OpenDAL's blocking API runs on. litevault itself is synchronous; the
//! runtime exists only so OpenDAL's async services can be driven from plain threads.

use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

pub fn get() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("litevault-io")
            .enable_all()
            .build()
            .expect("starting the I/O runtime")
    })
}
