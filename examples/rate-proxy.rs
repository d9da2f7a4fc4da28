//! The tests' fault proxy (tests/it/faultproxy.rs) as a program, for `scripts/bench
//! --parallel-download`: an HTTP proxy on 127.0.0.1 in front of an S3 server whose every
//! connection is capped to a rate, as object stores cap one connection's throughput.
//!
//! ```text
//! rate-proxy UPSTREAM_PORT BYTES_PER_SECOND
//! ```
//!
//! Prints the port it listens on, then serves until its standard input closes.

#[path = "../tests/it/faultproxy.rs"]
mod faultproxy;

use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(upstream), Some(rate)) = (
        args.first().and_then(|a| a.parse::<u16>().ok()),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: rate-proxy UPSTREAM_PORT BYTES_PER_SECOND");
        std::process::exit(2);
    };
    let proxy = faultproxy::FaultProxy::http(upstream);
    proxy.limit_rate(rate);
    println!("{}", proxy.port());
    let _ = std::io::stdout().flush();
    // The benchmark holds our standard input open while it needs the proxy.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
