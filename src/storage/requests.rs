//! Every request a run sends to each destination, counted by kind, with the bytes each way:
//! what object storage bills for. Counted in the operator's HTTP transport (an OpenDAL layer),
//! below OpenDAL's retries, so each try counts as the server saw it (and bills it): a request
//! counts once an answer came back, whatever its status.
//!
//! The bucket's own settings (versioning, object lock: `bucket`) are asked outside OpenDAL, and
//! counted there. Only S3 is counted: a folder or SFTP makes no billed request, and shows none.
//! The counts are the process's, per destination name: the runner takes them after each
//! attempt, for its report, the execution store and the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use opendal::raw::{Layer, Servicer};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter, OperationContext};
use serde::{Deserialize, Serialize};

/// One destination's requests, as reports, the execution store and the metrics show them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Listings (S3: ListObjectsV2, ListObjectVersions, ListMultipartUploads).
    pub list: u64,
    /// Looks at one object (S3: HeadObject).
    pub head: u64,
    /// Reads (S3: GetObject, whole or a range).
    pub get: u64,
    /// Writes other than parts (S3: PutObject, CopyObject, and starting or completing a
    /// multipart upload).
    pub put: u64,
    /// Parts of multipart uploads (S3: UploadPart).
    pub part: u64,
    /// Deletions (S3: DeleteObject, DeleteObjects, AbortMultipartUpload).
    pub delete: u64,
    /// Anything else.
    pub other: u64,
    /// Bytes received in response bodies.
    pub bytes_in: u64,
    /// Bytes sent in request bodies.
    pub bytes_out: u64,
}

impl Requests {
    /// Every request, whatever its kind.
    pub fn total(&self) -> u64 {
        self.list + self.head + self.get + self.put + self.part + self.delete + self.other
    }

    /// (kind, requests) for each kind, in a fixed order: the metrics' labels.
    pub fn by_kind(&self) -> [(&'static str, u64); 7] {
        [
            ("list", self.list),
            ("head", self.head),
            ("get", self.get),
            ("put", self.put),
            ("part", self.part),
            ("delete", self.delete),
            ("other", self.other),
        ]
    }

    pub fn add(&mut self, o: &Requests) {
        self.list += o.list;
        self.head += o.head;
        self.get += o.get;
        self.put += o.put;
        self.part += o.part;
        self.delete += o.delete;
        self.other += o.other;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// The kinds of [`Requests`], as [`classify`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    List,
    Head,
    Get,
    Put,
    Part,
    Delete,
    Other,
}

/// What kind of request an S3-style `method` on a URL with `query` is.
pub fn classify(method: &str, query: &str) -> Kind {
    let has = |key: &str| {
        query
            .split('&')
            .any(|p| p == key || p.split_once('=').is_some_and(|(k, _)| k == key))
    };
    match method {
        "HEAD" => Kind::Head,
        // The bucket's own settings (storage::bucket), not an object's.
        "GET" if has("versioning") || has("object-lock") => Kind::Other,
        "GET" if has("list-type") || has("versions") || has("uploads") || has("delimiter") => {
            Kind::List
        }
        "GET" => Kind::Get,
        "PUT" if has("partNumber") => Kind::Part,
        "PUT" => Kind::Put,
        "POST" if has("delete") => Kind::Delete,
        "POST" if has("uploads") || has("uploadId") => Kind::Put,
        "DELETE" => Kind::Delete,
        _ => Kind::Other,
    }
}

/// The live counts of one destination.
#[derive(Debug, Default)]
pub struct Counter {
    kinds: [AtomicU64; 7],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Counter {
    pub(super) fn count(&self, kind: Kind, sent: u64) {
        self.kinds[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(sent, Ordering::Relaxed);
    }

    pub(super) fn received(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts so far, which start again from zero.
    fn take(&self) -> Requests {
        let k = |kind: Kind| self.kinds[kind as usize].swap(0, Ordering::Relaxed);
        Requests {
            list: k(Kind::List),
            head: k(Kind::Head),
            get: k(Kind::Get),
            put: k(Kind::Put),
            part: k(Kind::Part),
            delete: k(Kind::Delete),
            other: k(Kind::Other),
            bytes_in: self.bytes_in.swap(0, Ordering::Relaxed),
            bytes_out: self.bytes_out.swap(0, Ordering::Relaxed),
        }
    }
}

/// Every counted destination of this process, by name: a destination opened many times (once
/// per host by the fleet view) adds up in one place.
static COUNTERS: Mutex<BTreeMap<String, Arc<Counter>>> = Mutex::new(BTreeMap::new());

/// The counter of destination `name`, made on first use.
pub fn counter(name: &str) -> Arc<Counter> {
    let mut all = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    all.entry(name.to_string()).or_default().clone()
}

/// Each counted destination's requests since the last take, which start again from zero.
pub fn take() -> BTreeMap<String, Requests> {
    let all = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .map(|(name, c)| (name.clone(), c.take()))
        .collect()
}

/// The layer that counts: it wraps the operator's HTTP transport, whatever sits above it.
#[derive(Debug)]
pub struct CountLayer(pub Arc<Counter>);

impl Layer for CountLayer {
    fn apply_context(&self, _srv: Servicer, inner: OperationContext) -> OperationContext {
        let transport = inner.http_transport().clone();
        inner.with_http_transport(HttpTransporter::new(Counted {
            inner: transport,
            counter: self.0.clone(),
        }))
    }
}

struct Counted {
    inner: HttpTransporter,
    counter: Arc<Counter>,
}

impl HttpTransport for Counted {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let kind = classify(req.method().as_str(), req.uri().query().unwrap_or(""));
        let sent = req.body().len() as u64;
        let res = self.inner.fetch(req).await?;
        self.counter.count(kind, sent);
        let counter = self.counter.clone();
        Ok(res.map(|body| body.map_inner(|stream| Box::new(CountedBody { stream, counter }))))
    }
}

type BodyStream =
    Box<dyn futures_core::Stream<Item = opendal::Result<Buffer>> + Send + Sync + Unpin + 'static>;

/// A response body that adds what it yields to the bytes received.
struct CountedBody {
    stream: BodyStream,
    counter: Arc<Counter>,
}

impl futures_core::Stream for CountedBody {
    type Item = opendal::Result<Buffer>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_next(cx);
        if let Poll::Ready(Some(Ok(buf))) = &polled {
            self.counter.received(buf.len() as u64);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart_as_s3_bills_them() {
        for (method, query, kind) in [
            ("GET", "list-type=2&prefix=h%2F", Kind::List),
            ("GET", "versions&prefix=h%2F", Kind::List),
            ("GET", "uploads", Kind::List),
            ("GET", "", Kind::Get),
            ("GET", "versionId=abc", Kind::Get),
            ("GET", "versioning", Kind::Other),
            ("GET", "object-lock", Kind::Other),
            ("HEAD", "", Kind::Head),
            ("PUT", "", Kind::Put),
            ("PUT", "partNumber=2&uploadId=x", Kind::Part),
            ("POST", "uploads", Kind::Put),
            ("POST", "uploadId=x", Kind::Put),
            ("POST", "delete", Kind::Delete),
            ("DELETE", "", Kind::Delete),
            ("DELETE", "uploadId=x", Kind::Delete),
            ("OPTIONS", "", Kind::Other),
        ] {
            assert_eq!(classify(method, query), kind, "{method} ?{query}");
        }
    }

    #[test]
    fn a_take_starts_the_counts_again() {
        let c = counter("requests-unit-test");
        c.count(Kind::Get, 0);
        c.count(Kind::Part, 10);
        let first = take()["requests-unit-test"];
        assert_eq!((first.get, first.part, first.bytes_out), (1, 1, 10));
        assert_eq!(first.total(), 2);
        assert_eq!(take()["requests-unit-test"], Requests::default());
    }
}
