//! One `[[destination]]` table: where it is (a URL, or `scheme` + options), the backend's own
//! keys checked for the combinations that make sense, and the transfer settings.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{is_safe_name, policy, Paths, RawRetention};
use crate::retention::Policy;
use crate::storage::url::{Location, Sse};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    name: String,
    url: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    retries: Option<usize>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    small_read_concurrency: Option<usize>,
    parallel_download_threshold: Option<String>,
    bandwidth_limit: Option<String>,
    retention: Option<RawRetention>,
    // file:// and sftp://: create the folder when it does not exist (else that is an error: an
    // unmounted disk must not fill the root file system, here or on the server).
    create: Option<bool>,
    // S3
    region: Option<String>,
    endpoint: Option<String>,
    virtual_host_style: Option<bool>,
    credentials_file: Option<PathBuf>,
    profile: Option<String>,
    sse: Option<String>,
    sse_kms_key_id: Option<String>,
    sse_c_key_file: Option<PathBuf>,
    #[serde(default)]
    use_instance_metadata: bool,
    // SFTP
    key: Option<PathBuf>,
    host_key_check: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub location: Location,
    /// Tries for a temporary error (with exponential backoff and jitter).
    pub retries: usize,
    /// Connect and I/O timeout of one request.
    pub timeout: Duration,
    /// Requests in flight at once for one object: parts of an upload (S3 multipart), ranges of
    /// a large download (S3).
    pub concurrency: usize,
    /// Small whole objects (sidecars, signatures) read at once by a listing: they hold a few
    /// KiB each, so this bound is about round trips, not memory as `concurrency` is.
    pub small_read_concurrency: usize,
    /// S3: archives of at least this many bytes are downloaded as `concurrency` ranged reads at
    /// once; smaller ones in one stream, where the ranges' own requests would cost more than they
    /// buy.
    pub parallel_download_threshold: u64,
    /// Bytes per second, when limited.
    pub bandwidth_limit: Option<u64>,
    /// This destination's own policy, when it overrides the top-level `[retention]`.
    pub retention: Option<Policy>,
}

/// See [`DestinationConfig::parallel_download_threshold`]: a restore of this size is where one
/// connection's throughput starts to show (seconds at a typical per-connection rate), while a
/// range's request costs milliseconds.
pub const DEFAULT_PARALLEL_DOWNLOAD_THRESHOLD: u64 = 64 << 20;

/// See [`DestinationConfig::small_read_concurrency`]: measured with scripts/bench-listing and
/// scripts/bench-fleet on loopback S3 (BENCHMARKS.md).
pub const DEFAULT_SMALL_READ_CONCURRENCY: usize = 32;

/// Between an error's text and its hint, in the `why` of a (key, why) error.
pub(super) const HINT: &str = "\u{1f}hint\u{1f}";

/// Check one destination table; errors are (key, why), `why` perhaps with a [`HINT`].
pub(super) fn validate(
    d: RawDestination,
    i: usize,
    paths: &Paths,
    seen: &mut HashSet<String>,
) -> Result<DestinationConfig, (String, String)> {
    let key = |k: &str| format!("destination[{i}].{k}");
    if !is_safe_name(&d.name) {
        return Err((
            key("name"),
            format!("is {:?}; use letters, digits, '.', '-' or '_'", d.name),
        ));
    }
    if !seen.insert(d.name.clone()) {
        return Err((
            key("name"),
            format!(
                "{:?} is used twice; destination names must be unique",
                d.name
            ),
        ));
    }
    let location = destination_location(&d, paths)
        .map_err(|(k, why)| (key(&k), format!("(destination {:?}) {why}", d.name)))?;
    let timeout = match &d.timeout {
        None => Duration::from_secs(60),
        Some(t) => humantime::parse_duration(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                (
                    key("timeout"),
                    format!("is {t:?}; write a duration such as \"30s\""),
                )
            })?,
    };
    let bandwidth_limit = match &d.bandwidth_limit {
        None => None,
        Some(b) => Some(parse_rate(b).ok_or_else(|| {
            (
                key("bandwidth_limit"),
                format!("is {b:?}; write bytes per second such as \"10MiB\" or \"500KB\""),
            )
        })?),
    };
    let parallel_download_threshold = match &d.parallel_download_threshold {
        None => DEFAULT_PARALLEL_DOWNLOAD_THRESHOLD,
        Some(b) => parse_rate(b).filter(|_| !b.contains('/')).ok_or_else(|| {
            (
                key("parallel_download_threshold"),
                format!("is {b:?}; write a size such as \"64MiB\""),
            )
        })?,
    };
    if d.concurrency == Some(0) {
        return Err((key("concurrency"), "must be at least 1".into()));
    }
    if d.small_read_concurrency == Some(0) {
        return Err((key("small_read_concurrency"), "must be at least 1".into()));
    }
    let retention = match &d.retention {
        None => None,
        Some(r) => Some(policy(r, &key("retention"))?),
    };
    Ok(DestinationConfig {
        name: d.name,
        location,
        retries: d.retries.unwrap_or(5),
        timeout,
        concurrency: d.concurrency.unwrap_or(4),
        small_read_concurrency: d
            .small_read_concurrency
            .unwrap_or(DEFAULT_SMALL_READ_CONCURRENCY),
        parallel_download_threshold,
        bandwidth_limit,
        retention,
    })
}

/// Where a destination is: its URL (or `scheme` + options) and the backend's own keys, checked
/// for the combinations that make sense. Errors are (key, why).
fn destination_location(
    d: &RawDestination,
    paths: &Paths,
) -> std::result::Result<Location, (String, String)> {
    let misplaced = |k: &str, backend: &str| {
        (
            k.to_string(),
            format!("applies only to {backend} destinations"),
        )
    };
    let location = match (&d.url, &d.scheme) {
        (Some(_), Some(_)) => {
            return Err((
                "scheme".into(),
                "cannot be combined with url: give one of them".into(),
            ))
        }
        (None, None) => {
            return Err((
                "url".into(),
                "is missing (or give `scheme` and an [destination.options] table)".into(),
            ))
        }
        // Compiled in for the unit tests' seam; a backup kept there is gone when the run ends.
        (None, Some(scheme)) if scheme == "memory" => {
            return Err((
                "scheme".into(),
                format!("\"memory\" keeps nothing once the run ends, so it cannot hold backups{HINT}use a file://, s3:// or sftp:// url"),
            ))
        }
        (None, Some(scheme)) => Location::Other {
            scheme: scheme.clone(),
            options: d.options.clone(),
        },
        (Some(url), None) => {
            if !d.options.is_empty() {
                return Err((
                    "options".into(),
                    "goes with `scheme`, not with `url`".into(),
                ));
            }
            Location::parse(url, paths.base()).map_err(|e| {
                let why = match crate::exit::hint(&e) {
                    Some(hint) => format!("{e:#}{HINT}{hint}"),
                    None => format!("{e:#}"),
                };
                ("url".to_string(), why)
            })?
        }
    };
    match &location {
        Location::S3(s3) => {
            let mut s3 = s3.clone();
            if let Some(r) = &d.region {
                s3.region = Some(r.clone());
            }
            if let Some(e) = &d.endpoint {
                s3.endpoint = Some(e.clone());
            }
            if s3.endpoint.as_deref().is_some_and(|e| e.contains('@')) {
                return Err((
                    "endpoint".into(),
                    "holds credentials; they come from the environment or credentials_file, never a URL".into(),
                ));
            }
            if s3.region.is_none() {
                return Err(("region".into(), "is missing: S3 signs every request for one region; set region = \"us-east-1\" (or ?region= in the url)".into()));
            }
            if let Some(v) = d.virtual_host_style {
                s3.virtual_host_style = v;
            }
            s3.credentials_file = d
                .credentials_file
                .as_ref()
                .map(|p| paths.resolve("credentials_file", p))
                .transpose()?;
            s3.profile = d.profile.clone();
            s3.use_instance_metadata = d.use_instance_metadata;
            s3.sse = match (d.sse.as_deref(), &d.sse_kms_key_id, &d.sse_c_key_file) {
                (None, None, None) => Sse::None,
                (Some("AES256"), None, None) => Sse::S3,
                (Some("aws:kms"), id, None) => Sse::Kms(id.clone()),
                (None, None, Some(file)) => Sse::Customer(paths.resolve("sse_c_key_file", file)?),
                (Some(other), _, None) if other != "AES256" && other != "aws:kms" => {
                    return Err((
                        "sse".into(),
                        format!("is {other:?}; choose \"AES256\" or \"aws:kms\""),
                    ))
                }
                (_, Some(_), _) => {
                    return Err(("sse_kms_key_id".into(), "needs sse = \"aws:kms\"".into()))
                }
                (Some(_), _, Some(_)) => {
                    return Err((
                        "sse_c_key_file".into(),
                        "cannot be combined with sse (SSE-C is its own mode)".into(),
                    ))
                }
                _ => unreachable!("all combinations are covered above"),
            };
            for (k, set) in [
                ("key", d.key.is_some()),
                ("host_key_check", d.host_key_check.is_some()),
            ] {
                if set {
                    return Err(misplaced(k, "sftp://"));
                }
            }
            if d.create.is_some() {
                return Err(misplaced("create", "file:// and sftp://"));
            }
            return Ok(Location::S3(s3));
        }
        Location::Sftp(sftp) => {
            let mut sftp = sftp.clone();
            let Some(key) = &d.key else {
                return Err(("key".into(), "is missing: sftp:// destinations log in with a private key (password login is not supported)".into()));
            };
            sftp.key = paths.resolve("key", key)?;
            sftp.accept_new_host_key = match d.host_key_check.as_deref() {
                None | Some("strict") => false,
                Some("accept-new") => true,
                Some(other) => {
                    return Err((
                        "host_key_check".into(),
                        format!("is {other:?}; choose \"strict\" or \"accept-new\""),
                    ))
                }
            };
            s3_keys_absent(d).map_err(|k| misplaced(&k, "s3://"))?;
            sftp.create = d.create.unwrap_or(false);
            return Ok(Location::Sftp(sftp));
        }
        Location::File { .. } | Location::Other { .. } => {
            s3_keys_absent(d).map_err(|k| misplaced(&k, "s3://"))?;
            for (k, set) in [
                ("key", d.key.is_some()),
                ("host_key_check", d.host_key_check.is_some()),
            ] {
                if set {
                    return Err(misplaced(k, "sftp://"));
                }
            }
        }
    }
    match location {
        Location::File { root, .. } => Ok(Location::File {
            root,
            create: d.create.unwrap_or(false),
        }),
        _ if d.create.is_some() => Err(misplaced("create", "file:// and sftp://")),
        other => Ok(other),
    }
}

fn s3_keys_absent(d: &RawDestination) -> std::result::Result<(), String> {
    let keys = [
        ("region", d.region.is_some()),
        ("endpoint", d.endpoint.is_some()),
        ("virtual_host_style", d.virtual_host_style.is_some()),
        ("credentials_file", d.credentials_file.is_some()),
        ("profile", d.profile.is_some()),
        ("sse", d.sse.is_some()),
        ("sse_kms_key_id", d.sse_kms_key_id.is_some()),
        ("sse_c_key_file", d.sse_c_key_file.is_some()),
        ("use_instance_metadata", d.use_instance_metadata),
    ];
    match keys.iter().find(|(_, set)| *set) {
        Some((k, _)) => Err(k.to_string()),
        None => Ok(()),
    }
}

/// "10MiB", "500KB", "1000000" (bytes per second).
fn parse_rate(text: &str) -> Option<u64> {
    let t = text.trim().trim_end_matches("/s");
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    let v = (num * mult as f64) as u64;
    (v > 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("1000"), Some(1000));
        assert_eq!(parse_rate("1.5MB/s"), Some(1_500_000));
        assert_eq!(parse_rate("2KiB"), Some(2048));
        assert_eq!(parse_rate("0"), None);
        assert_eq!(parse_rate("lots"), None);
    }
}
