//! The fault proxy itself: that each fault does what the tests that use it assume.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::faultproxy::{Dir, FaultProxy};

/// A stand-in HTTP server: answers every request `200 ok` and closes.
fn tiny_http_server() -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = c.set_nonblocking(false);
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let close = String::from_utf8_lossy(&head)
                .to_lowercase()
                .contains("connection: close");
            let body = if close { "ok" } else { "no" };
            let _ = c.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{body}")
                    .as_bytes(),
            );
        }
    });
    (port, stop)
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_millis(1500)))?;
    c.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn faults_proxy_self_test() {
    let (port, stop) = tiny_http_server();
    let p = FaultProxy::http(port);
    // Pass-through, with the request rewritten to one per connection.
    let r = http_get(p.port()).unwrap();
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    // The first request faulted, the next one through.
    p.fail_first(1, 503);
    let r = http_get(p.port()).unwrap();
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("Retry-After: 0") && r.contains("<Code>ServiceUnavailable</Code>"));
    assert!(http_get(p.port()).unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!((p.requests(), p.http_faults()), (3, 1));
    // Only matching requests.
    p.fail_matching("POST ", 500);
    assert!(http_get(p.port()).unwrap().starts_with("HTTP/1.1 200"));
    // Frozen: no answer, until passed again.
    p.stall();
    let e = http_get(p.port()).unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    p.pass();
    // (The frozen request goes on once passed, though its client has gone.)
    std::thread::sleep(Duration::from_millis(300));
    // Cut mid-response: 20 bytes, then the end.
    let resets = p.resets();
    p.reset_after(Dir::ToClient, 20);
    let r = http_get(p.port()).unwrap_or_default();
    assert!(r.len() <= 20, "{r:?}");
    assert_eq!(p.resets(), resets + 1);
    // Frozen mid-response.
    p.pass();
    p.stall_after(Dir::ToClient, 10);
    let mut c = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = [0u8; 100];
    assert_eq!(c.read(&mut got).unwrap(), 10);
    assert!(c.read(&mut got).is_err(), "frozen after 10 bytes");
    p.pass();
    // Refused by the kernel; then back.
    p.refuse();
    let e = TcpStream::connect(("127.0.0.1", p.port())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    p.pass();
    assert!(http_get(p.port()).unwrap().starts_with("HTTP/1.1 200"));
    // Hung up at once, counted.
    let before = p.connections();
    p.hang_up();
    assert!(http_get(p.port()).map(|r| r.is_empty()).unwrap_or(true));
    assert_eq!(p.connections(), before + 1);
    let start = Instant::now();
    drop(c);
    drop(p);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the proxy stops at once"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}
