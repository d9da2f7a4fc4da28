//! Every S3 upload (`PutObject` and each `UploadPart`) carries a `Content-MD5` header. A bucket
//! with object lock (a default retention, the storage that keeps what a ransomware attacker
//! deletes) refuses uploads without an integrity header, and `Content-MD5` is the one every S3
//! implementation accepts; OpenDAL's own `checksum_algorithm` sends `Content-MD5` only for
//! single uploads and an `x-amz-checksum-*` header that not every server takes. The server then
//! checks each part it received against it, too.
//!
//! The header is added in the operator's HTTP transport, after OpenDAL signs the request:
//! `Content-MD5` is not an `x-amz-*` header, so SigV4 does not require it to be signed.

use base64::Engine;
use md5::{Digest, Md5};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter, Operator};

/// `op` with every upload request it sends given its body's `Content-MD5`.
pub fn send_with_content_md5(op: Operator) -> Operator {
    let ctx = op.context().clone();
    let inner = ctx.http_transport().clone();
    op.with_context(ctx.with_http_transport(HttpTransporter::new(WithContentMd5(inner))))
}

const CONTENT_MD5: http::HeaderName = http::HeaderName::from_static("content-md5");

struct WithContentMd5(HttpTransporter);

impl HttpTransport for WithContentMd5 {
    async fn fetch(
        &self,
        mut req: http::Request<Buffer>,
    ) -> opendal::Result<http::Response<HttpBody>> {
        let upload = req.method() == http::Method::PUT && !req.body().is_empty();
        if upload && !req.headers().contains_key(CONTENT_MD5) {
            let mut md5 = Md5::new();
            for chunk in req.body().clone() {
                md5.update(&chunk);
            }
            let digest = base64::engine::general_purpose::STANDARD.encode(md5.finalize());
            let value = http::HeaderValue::from_str(&digest).expect("base64 is a header value");
            req.headers_mut().insert(CONTENT_MD5, value);
        }
        self.0.fetch(req).await
    }
}
