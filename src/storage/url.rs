//! Destination URLs, parsed into a [`Location`] that says which OpenDAL service to build.
//!
//! Secrets never live in a URL: credentials come from the environment or a file, SFTP logs in
//! with a key. A URL that carries a password is refused without being echoed back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file:///abs/path`. The folder must exist unless `create = true` (a mount point that is
    /// not mounted must not fill the root file system).
    File { root: PathBuf, create: bool },
    /// `s3://BUCKET/PREFIX?endpoint=...&region=...`
    S3(S3),
    /// `sftp://USER@HOST:PORT/ABS/PATH`. The folder must exist on the server unless
    /// `create = true`, as for `file://`.
    Sftp(Sftp),
    /// Any other OpenDAL service: `scheme = "..."` plus `[destination.options]`.
    Other {
        scheme: String,
        options: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3 {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub virtual_host_style: bool,
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
    pub sse: Sse,
    pub use_instance_metadata: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sse {
    #[default]
    None,
    /// `sse = "AES256"`: keys managed by S3.
    S3,
    /// `sse = "aws:kms"`, with a key id or the AWS-managed key.
    Kms(Option<String>),
    /// SSE-C: a 32-byte key read from this file.
    Customer(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sftp {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub key: PathBuf,
    pub accept_new_host_key: bool,
    /// `create = true`: make the folder when it is missing on the server.
    pub create: bool,
}

impl Location {
    pub fn parse(url: &str, base: &Path) -> Result<Location> {
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("is not a URL; write file:///path, s3://bucket/prefix?region=... or sftp://user@host:port/path");
        };
        match scheme {
            "file" => {
                if rest.is_empty() {
                    bail!("names no folder; write file:///path/to/folder");
                }
                let path = Path::new(rest);
                if !path.is_absolute() {
                    // `file://var/backups` reads as /var/backups but is a relative path: it would
                    // land under the config's folder, silently.
                    let rest = rest.trim_start_matches("./");
                    let beside = normalize(&base.join(path));
                    return Err(anyhow::Error::new(
                        crate::exit::config(format!(
                            "is {url:?}, a relative path: it would mean {} under the config's folder, not /{rest}; a file URL takes an absolute path after its two slashes",
                            beside.display(),
                        ))
                        .hint(format!(
                            "write file:///{rest} for /{rest} (or file://{} for the folder beside the config)",
                            beside.display()
                        )),
                    ));
                }
                Ok(Location::File { root: normalize(path), create: false })
            }
            "s3" => parse_s3(rest),
            "sftp" => parse_sftp(rest),
            other => bail!(
                "{other}:// is not a known destination; use file://, s3:// or sftp://, or `scheme` with [destination.options] for another OpenDAL service"
            ),
        }
    }

    /// How the destination is named in messages: never with credentials.
    pub fn display(&self) -> String {
        match self {
            Location::File { root, .. } => format!("file://{}", root.display()),
            Location::S3(s3) => {
                let mut s = format!("s3://{}/{}", s3.bucket, s3.prefix);
                if let Some(e) = &s3.endpoint {
                    s.push_str(&format!(" at {e}"));
                }
                s
            }
            Location::Sftp(s) => format!("sftp://{}@{}:{}{}", s.user, s.host, s.port, s.path),
            Location::Other { scheme, .. } => format!("{scheme} (OpenDAL)"),
        }
    }
}

fn parse_s3(rest: &str) -> Result<Location> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.contains('@') {
        bail!(
            "holds credentials; S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or credentials_file, never the URL"
        );
    }
    if bucket.is_empty() {
        bail!("names no bucket; write s3://BUCKET/PREFIX?region=...");
    }
    let mut s3 = S3 {
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
        ..S3::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "endpoint" => s3.endpoint = Some(v),
            "region" => s3.region = Some(v),
            "virtual_host_style" => s3.virtual_host_style = v == "true",
            other => bail!("has an unknown query parameter {other:?} (known: endpoint, region, virtual_host_style)"),
        }
    }
    Ok(Location::S3(s3))
}

fn parse_sftp(rest: &str) -> Result<Location> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let Some((userinfo, hostport)) = authority.rsplit_once('@') else {
        bail!("names no user; write sftp://USER@HOST:PORT/ABSOLUTE/PATH");
    };
    if userinfo.contains(':') {
        bail!(
            "holds a password; OpenDAL's SFTP transport cannot log in with passwords: remove it and set key = \"/path/to/private_key\""
        );
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| anyhow::anyhow!("has a bad port {p:?}"))?,
        ),
        None => (hostport, 22),
    };
    if host.is_empty() || userinfo.is_empty() {
        bail!("needs a user and a host: sftp://USER@HOST:PORT/ABSOLUTE/PATH");
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        bail!("needs an absolute folder after the host: sftp://USER@HOST:PORT/ABSOLUTE/PATH");
    }
    Ok(Location::Sftp(Sftp {
        user: userinfo.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
        ..Sftp::default()
    }))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a/b/../c` -> `a/c`, without touching the filesystem (the folder may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/etc/litevault";

    fn parse(url: &str) -> Result<Location> {
        Location::parse(url, Path::new(BASE))
    }

    #[test]
    fn file_urls() {
        assert_eq!(
            parse("file:///var/backups").unwrap(),
            Location::File {
                root: "/var/backups".into(),
                create: false,
            }
        );
        assert_eq!(
            parse("file:///var/x/../backups").unwrap(),
            Location::File {
                root: "/var/backups".into(),
                create: false,
            }
        );
        let err = parse("file://var/backups/litevault").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("relative"), "{msg}");
        let hint = crate::exit::hint(&err).unwrap();
        assert!(hint.contains("file:///var/backups/litevault"), "{hint}");
        for bad in [
            "/var/backups",
            "file://",
            "gopher://x",
            "file://backups",
            "file://../backups",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_urls() {
        let Location::S3(s3) =
            parse("s3://bkt/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=us-east-1").unwrap()
        else {
            panic!()
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("bkt", "a/b"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
        assert!(!s3.virtual_host_style);
        let Location::S3(s3) =
            parse("s3://bkt?endpoint=http://127.0.0.1:9000&virtual_host_style=true").unwrap()
        else {
            panic!()
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.virtual_host_style && s3.prefix.is_empty());
        assert!(parse("s3://?region=x").is_err());
        assert!(parse("s3://b?colour=red").is_err());
    }

    #[test]
    fn secrets_in_urls_are_refused_without_echo() {
        for url in ["s3://AKIA:SECRETXYZ@bkt/p", "sftp://bob:SECRETXYZ@host/srv"] {
            let msg = format!("{:#}", parse(url).unwrap_err());
            assert!(!msg.contains("SECRETXYZ"), "{msg}");
        }
        let msg = format!("{:#}", parse("sftp://bob:pw@host/srv").unwrap_err());
        assert!(msg.contains("key"), "{msg}");
    }

    #[test]
    fn sftp_urls() {
        let Location::Sftp(s) = parse("sftp://backup@127.0.0.1:2222/srv/backups/").unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.user.as_str(), s.host.as_str(), s.port, s.path.as_str()),
            ("backup", "127.0.0.1", 2222, "/srv/backups")
        );
        let Location::Sftp(s) = parse("sftp://backup@host/srv").unwrap() else {
            panic!()
        };
        assert_eq!(s.port, 22);
        for bad in [
            "sftp://host/srv",
            "sftp://u@host",
            "sftp://u@host:x/srv",
            "sftp://@host/srv",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
