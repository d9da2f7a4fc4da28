//! What an S3 destination's bucket keeps, which OpenDAL has no call for: whether it keeps
//! versions (`GET /?versioning`), its object lock default retention (`GET /?object-lock`), and
//! the retain-until date of one object's current version (a `HEAD`). Each is one request signed
//! by the signer OpenDAL's S3 service uses (reqsign's SigV4, never a hand-written one), sent to
//! the bucket the destination's config resolves to (endpoint, region, path or virtual-host
//! addressing, credentials), and bounded by the destination's request timeout.
//!
//! A refusal (the credential may not read the bucket's configuration) or a server that does not
//! implement a request is an answer too: [`Answer::Refused`] and [`Answer::Unknown`], never a
//! failure of the command that asked.

use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use reqsign_aws_v4::{
    Credential, IMDSv2CredentialProvider, RequestSigner, StaticCredentialProvider,
    EMPTY_STRING_SHA256,
};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};

use super::url::{Location, S3};
use super::Destination;

/// Whether the bucket keeps what is deleted or overwritten as older versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    Enabled,
    Suspended,
    /// Never turned on: a delete or an overwrite is final.
    Off,
}

/// The object lock retention every new version gets unless it asks for another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefaultRetention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    /// The period in days (S3 counts a year as 365 days).
    pub days: u64,
}

/// One bucket-level answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer<T> {
    Known(T),
    /// HTTP 403: this credential may not ask (an IAM policy without the bucket's read actions).
    Refused(String),
    /// The server does not implement the request, or did not answer in time.
    Unknown(String),
}

impl<T> Answer<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Answer::Known(v) => Some(v),
            _ => None,
        }
    }
}

/// The bucket of one S3 destination, ready to be asked.
pub struct Bucket {
    signer: Signer<Credential>,
    client: reqwest::Client,
    /// The bucket's URL as OpenDAL addresses it, without a trailing slash.
    base: String,
    /// Where this destination's objects start inside the bucket (its prefix and namespace).
    root: String,
    timeout: Duration,
    /// The destination's request counts: these requests are billed like any other.
    counter: std::sync::Arc<super::requests::Counter>,
}

impl Destination {
    /// This destination's bucket, when it is one (S3); `None` for every other backend.
    pub fn bucket(&self) -> Result<Option<Bucket>> {
        let Location::S3(s3) = &self.link.location else {
            return Ok(None);
        };
        let namespace = self.namespace.as_deref().unwrap_or("");
        let counter = super::requests::counter(&self.name);
        Bucket::new(s3, namespace, self.link.timeout, counter).map(Some)
    }
}

impl Bucket {
    fn new(
        s3: &S3,
        namespace: &str,
        timeout: Duration,
        counter: std::sync::Arc<super::requests::Counter>,
    ) -> Result<Bucket> {
        let region = s3.region.as_deref().unwrap_or("us-east-1");
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| anyhow!("building the HTTP client for bucket requests: {e}"))?;
        let ctx = Context::new().with_env(OsEnv).with_http_send(Send {
            client: client.clone(),
        });
        // The same sources, in the same order, as the operator itself (storage::open).
        let provider = match super::credentials::load(s3)? {
            Some(c) => {
                let mut p =
                    StaticCredentialProvider::new(&c.access_key_id, &c.secret_access_key);
                if let Some(t) = &c.session_token {
                    p = p.with_session_token(t);
                }
                ProvideCredentialChain::new().push(p)
            }
            None if s3.use_instance_metadata => {
                ProvideCredentialChain::new().push(IMDSv2CredentialProvider::new())
            }
            None => {
                return Err(crate::exit::config(
                    "no S3 credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set and no credentials_file is configured",
                )
                .into())
            }
        };
        let root = [s3.prefix.as_str(), namespace]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| format!("{}/", s.trim_matches('/')))
            .collect();
        Ok(Bucket {
            signer: Signer::new(ctx, provider, RequestSigner::new("s3", region)),
            client,
            base: base_url(s3, region),
            root,
            timeout,
            counter,
        })
    }

    /// Versioning and the default retention, asked one after the other.
    pub fn status(&self) -> (Answer<Versioning>, Answer<Option<DefaultRetention>>) {
        (self.versioning(), self.default_retention())
    }

    pub fn versioning(&self) -> Answer<Versioning> {
        match self.send(http::Method::GET, "/?versioning") {
            Ok((200, body)) => Answer::Known(match tag(&body, "Status") {
                Some("Enabled") => Versioning::Enabled,
                Some("Suspended") => Versioning::Suspended,
                _ => Versioning::Off,
            }),
            Ok((status, body)) => refusal(status, &body),
            Err(e) => Answer::Unknown(e),
        }
    }

    pub fn default_retention(&self) -> Answer<Option<DefaultRetention>> {
        match self.send(http::Method::GET, "/?object-lock") {
            Ok((200, body)) => {
                let number = |name| tag(&body, name).and_then(|n| n.trim().parse::<u64>().ok());
                let days = number("Days").or_else(|| number("Years").map(|y| y * 365));
                Answer::Known(match (tag(&body, "Mode"), days) {
                    (Some(mode), Some(days)) => Some(DefaultRetention {
                        mode: mode.trim().to_string(),
                        days,
                    }),
                    _ => None,
                })
            }
            Ok((404, _)) => Answer::Known(None),
            Ok((_, body)) if body.contains("ObjectLockConfigurationNotFound") => {
                Answer::Known(None)
            }
            Ok((status, body)) => refusal(status, &body),
            Err(e) => Answer::Unknown(e),
        }
    }

    /// The retain-until date of the current version of `path` (inside the destination's
    /// namespace), as RFC 3339: `Known(None)` when it has none (or the credential may not see
    /// it: S3 leaves the header out without `s3:GetObjectRetention`).
    pub fn retain_until(&self, path: &str) -> Answer<Option<jiff::Timestamp>> {
        let key = format!("/{}", encode_key(&format!("{}{path}", self.root)));
        match self.send(http::Method::HEAD, &key) {
            Ok((200, date)) => Answer::Known(date.parse().ok()),
            // A HEAD answers with no body to read a code from.
            Ok((status, _)) => refusal(status, ""),
            Err(e) => Answer::Unknown(e),
        }
    }

    /// One signed request: its status and body (for a HEAD, its retain-until header instead).
    fn send(
        &self,
        method: http::Method,
        target: &str,
    ) -> std::result::Result<(u16, String), String> {
        let url = format!("{}{target}", self.base);
        let head = method == http::Method::HEAD;
        let kind = super::requests::classify(
            method.as_str(),
            target.split_once('?').map_or("", |(_, q)| q),
        );
        let runtime = super::runtime::handle();
        runtime.block_on(async {
            let request = http::Request::builder()
                .method(method)
                .uri(&url)
                .header("x-amz-content-sha256", EMPTY_STRING_SHA256)
                .body(())
                .map_err(|e| format!("{e}"))?;
            let (mut parts, ()) = request.into_parts();
            self.signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| format!("signing: {e}"))?;
            let mut req = self.client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                req = req.header(name, value);
            }
            let work = async {
                let resp = req.send().await?;
                self.counter.count(kind, 0);
                let status = resp.status().as_u16();
                if head {
                    let date = resp
                        .headers()
                        .get("x-amz-object-lock-retain-until-date")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    return Ok((status, date));
                }
                let body = resp.text().await?;
                self.counter.received(body.len() as u64);
                Ok::<_, reqwest::Error>((status, body))
            };
            match tokio::time::timeout(self.timeout, work).await {
                Ok(Ok(answer)) => Ok(answer),
                // reqwest's errors name the URL (our bucket and prefix), never a credential.
                Ok(Err(e)) => Err(format!("{e}")),
                Err(_) => Err(format!(
                    "no answer within {}",
                    crate::ui::duration(self.timeout)
                )),
            }
        })
    }
}

fn refusal<T>(status: u16, body: &str) -> Answer<T> {
    let code = tag(body, "Code").unwrap_or("");
    match status {
        403 => Answer::Refused(format!("HTTP 403 {code}").trim().to_string()),
        _ => Answer::Unknown(format!("HTTP {status} {code}").trim().to_string()),
    }
}

/// The text of the first `<name>` element: S3's answers here are small and flat.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

/// The bucket's URL exactly as OpenDAL's S3 service builds it: `https://` when the endpoint
/// has no scheme, AWS's regional endpoint when none is given, and the bucket in the host or in
/// the path.
fn base_url(s3: &S3, region: &str) -> String {
    let mut endpoint = match &s3.endpoint {
        Some(e) if e.starts_with("http") => e.clone(),
        Some(e) => format!("https://{e}"),
        None => format!("https://s3.{region}.amazonaws.com"),
    };
    endpoint = endpoint.replace(&format!("//{}.", s3.bucket), "//");
    let mut endpoint = endpoint.trim_end_matches('/').to_string();
    for default_port in ["https://", "http://"].iter().zip([":443", ":80"]) {
        if endpoint.starts_with(default_port.0) && endpoint.ends_with(default_port.1) {
            endpoint.truncate(endpoint.len() - default_port.1.len());
        }
    }
    if s3.virtual_host_style {
        endpoint.replacen("//", &format!("//{}.", s3.bucket), 1)
    } else {
        format!("{endpoint}/{}", s3.bucket)
    }
}

/// S3's URI encoding of a key: everything but unreserved characters and `/`.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The HTTP client reqsign's instance-metadata credentials are fetched with: the same bounded
/// client as the bucket requests.
#[derive(Debug)]
struct Send {
    client: reqwest::Client,
}

impl reqsign_core::HttpSend for Send {
    async fn http_send(
        &self,
        req: http::Request<Bytes>,
    ) -> reqsign_core::Result<http::Response<Bytes>> {
        let (parts, body) = req.into_parts();
        let mut out = self
            .client
            .request(parts.method, parts.uri.to_string())
            .body(body);
        for (name, value) in &parts.headers {
            out = out.header(name, value);
        }
        let resp = out
            .send()
            .await
            .map_err(|e| reqsign_core::Error::unexpected(format!("{e}")))?;
        let mut builder = http::Response::builder().status(resp.status());
        for (name, value) in resp.headers() {
            builder = builder.header(name, value);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| reqsign_core::Error::unexpected(format!("{e}")))?;
        builder
            .body(body)
            .map_err(|e| reqsign_core::Error::unexpected(format!("{e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_is_addressed_as_opendal_addresses_it() {
        let mut s3 = S3 {
            bucket: "b".into(),
            ..Default::default()
        };
        assert_eq!(
            base_url(&s3, "eu-west-1"),
            "https://s3.eu-west-1.amazonaws.com/b"
        );
        s3.virtual_host_style = true;
        assert_eq!(
            base_url(&s3, "eu-west-1"),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
        s3.endpoint = Some("minio.example:9000/".into());
        assert_eq!(base_url(&s3, "x"), "https://b.minio.example:9000");
        s3.virtual_host_style = false;
        s3.endpoint = Some("http://127.0.0.1:80".into());
        assert_eq!(base_url(&s3, "x"), "http://127.0.0.1/b");
    }

    #[test]
    fn answers_are_read_from_s3s_xml() {
        let xml = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
        assert_eq!(tag(xml, "Status"), Some("Enabled"));
        assert_eq!(tag(xml, "Mode"), None);
        assert_eq!(encode_key("a b/c+d.json"), "a%20b/c%2Bd.json");
    }
}
