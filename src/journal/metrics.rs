//! The Prometheus metrics file for node_exporter's textfile collector: this host's runs and
//! destinations (from the execution store), or the fleet view's hosts, replaced atomically.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::Journal;

/// The metrics file for node_exporter's textfile collector, replaced atomically.
pub struct Metrics {
    pub path: PathBuf,
}

/// Facts about one destination for the metrics file.
pub struct DestinationFacts {
    pub name: String,
    pub backups: u64,
    pub newest_age: Option<Duration>,
    /// The newest signed sequence number there, and how many numbered backups are missing
    /// (rolled back or deleted out of turn); `None` when not judged.
    pub sequence: Option<u64>,
    pub missing: Option<u64>,
    /// The share of the stored bytes verified, and the age of the oldest backup not verified
    /// yet (zero: none); `None` when not known.
    pub verified: Option<(f64, Duration)>,
}

/// One host's backups on one destination, as the fleet view (`list --all-hosts`) counts them.
pub struct HostFacts {
    pub host: String,
    pub destination: String,
    pub backups: u64,
    pub newest_age: Option<Duration>,
}

impl Metrics {
    /// The fleet view's file: per host and destination, the good backups and the newest one's
    /// age (left out when there is none, so `litevault_host_backups == 0` is the alert).
    pub fn write_hosts(&self, hosts: &[HostFacts]) -> Result<()> {
        let mut out = String::new();
        let labels = |h: &HostFacts| {
            format!(
                "host=\"{}\",destination=\"{}\"",
                escape(&h.host),
                escape(&h.destination)
            )
        };
        out.push_str(
            "# HELP litevault_host_newest_backup_age_seconds Age of each host's newest good backup, by destination.\n\
             # TYPE litevault_host_newest_backup_age_seconds gauge\n",
        );
        for h in hosts {
            if let Some(age) = h.newest_age {
                out.push_str(&format!(
                    "litevault_host_newest_backup_age_seconds{{{}}} {}\n",
                    labels(h),
                    age.as_secs()
                ));
            }
        }
        out.push_str(
            "# HELP litevault_host_backups Good backups of each host, by destination.\n\
             # TYPE litevault_host_backups gauge\n",
        );
        for h in hosts {
            out.push_str(&format!(
                "litevault_host_backups{{{}}} {}\n",
                labels(h),
                h.backups
            ));
        }
        self.replace(&out)
    }

    pub fn write(
        &self,
        journal: &Journal,
        host: &str,
        destinations: &[DestinationFacts],
    ) -> Result<()> {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, samples: Vec<(String, f64)>| {
            if samples.is_empty() {
                return;
            }
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{{host=\"{host}\"{labels}}} {v}\n"));
            }
        };
        let mut last_run = Vec::new();
        let mut last_status = Vec::new();
        let mut last_duration = Vec::new();
        let mut last_success = Vec::new();
        let mut last_bytes = Vec::new();
        for command in ["backup", "prune", "verify", "restore", "check"] {
            let (last, success) = journal.last(command)?;
            let label = format!(",command=\"{command}\"");
            if let Some(run) = &last {
                last_run.push((label.clone(), secs_of(&run.started)));
                last_status.push((label.clone(), run.exit_code.unwrap_or(1) as f64));
                if let Some(s) = run.seconds {
                    last_duration.push((label.clone(), s));
                }
            }
            if let Some(run) = &success {
                last_success.push((
                    label.clone(),
                    secs_of(run.ended.as_deref().unwrap_or(&run.started)),
                ));
                if let (Some(b), "backup") = (run.bytes, command) {
                    last_bytes.push((String::new(), b as f64));
                }
            }
        }
        metric(
            "litevault_last_run_timestamp_seconds",
            "Start of the last run, by command.",
            last_run,
        );
        metric(
            "litevault_last_run_exit_code",
            "Exit code of the last run (0 is success), by command.",
            last_status,
        );
        metric(
            "litevault_last_run_duration_seconds",
            "Duration of the last run, by command.",
            last_duration,
        );
        metric(
            "litevault_last_success_timestamp_seconds",
            "End of the last successful run, by command.",
            last_success,
        );
        metric(
            "litevault_last_backup_stored_bytes",
            "Bytes stored by the last successful backup (per destination).",
            last_bytes,
        );
        let per_dest = |value: &dyn Fn(&DestinationFacts) -> Option<f64>| -> Vec<(String, f64)> {
            destinations
                .iter()
                .filter_map(|d| Some((format!(",destination=\"{}\"", d.name), value(d)?)))
                .collect()
        };
        for (name, help, samples) in [
            (
                "litevault_backups",
                "Complete backups on each destination.",
                per_dest(&|d| Some(d.backups as f64)),
            ),
            (
                "litevault_newest_backup_age_seconds",
                "Age of the newest complete backup on each destination.",
                per_dest(&|d| d.newest_age.map(|a| a.as_secs_f64().round())),
            ),
            (
                "litevault_backup_sequence",
                "The newest signed sequence number on each destination: a decrease means backups were deleted or rolled back.",
                per_dest(&|d| d.sequence.map(|n| n as f64)),
            ),
            (
                "litevault_backups_missing",
                "Numbered backups missing from each destination that nobody should have deleted (rolled back, or deleted out of turn).",
                per_dest(&|d| d.missing.map(|n| n as f64)),
            ),
            (
                "litevault_verified_fraction",
                "Share of the stored bytes on each destination whose backup's latest verification passed (verify, verify --sample).",
                per_dest(&|d| d.verified.map(|(share, _)| share)),
            ),
            (
                "litevault_oldest_unverified_seconds",
                "Age of the oldest backup on each destination not verified yet, or whose latest verification failed (0: none).",
                per_dest(&|d| d.verified.map(|(_, age)| age.as_secs() as f64)),
            ),
        ] {
            metric(name, help, samples);
        }
        // Counters, from totals the store keeps across runs: `increase()` over them is what
        // the destinations were asked in a window, whatever the runs in between.
        let totals = journal.request_totals()?;
        if !totals.is_empty() {
            out.push_str(
                "# HELP litevault_requests_total Requests sent to each destination (S3), by kind.\n\
                 # TYPE litevault_requests_total counter\n",
            );
            for (dest, t) in &totals {
                for (kind, n) in t.by_kind() {
                    out.push_str(&format!(
                        "litevault_requests_total{{host=\"{host}\",destination=\"{}\",kind=\"{kind}\"}} {n}\n",
                        escape(dest)
                    ));
                }
            }
            out.push_str(
                "# HELP litevault_request_bytes_total Bytes sent to (out) and received from (in) each destination (S3).\n\
                 # TYPE litevault_request_bytes_total counter\n",
            );
            for (dest, t) in &totals {
                for (direction, n) in [("in", t.bytes_in), ("out", t.bytes_out)] {
                    out.push_str(&format!(
                        "litevault_request_bytes_total{{host=\"{host}\",destination=\"{}\",direction=\"{direction}\"}} {n}\n",
                        escape(dest)
                    ));
                }
            }
        }
        self.replace(&out)
    }

    /// Replace the file with `out` at once: node_exporter never reads half of it.
    fn replace(&self, out: &str) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        // The metrics folder is often shared with node_exporter: create the file fresh, never
        // through a link someone planted under its name.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(0o400000) // O_NOFOLLOW
                .mode(0o644)
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?
        };
        std::io::Write::write_all(&mut file, out.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        // node_exporter runs as another user: the metrics hold no secret, so they are world-readable.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing the metrics file {}", self.path.display()))?;
        Ok(())
    }
}

/// A Prometheus label value, quoted safely.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn secs_of(rfc: &str) -> f64 {
    humantime::parse_rfc3339(rfc)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_metrics_name_each_host_and_leave_out_an_age_that_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics {
            path: dir.path().join("fleet.prom"),
        };
        let host = |host: &str, backups, age: Option<u64>| HostFacts {
            host: host.into(),
            destination: "s3".into(),
            backups,
            newest_age: age.map(Duration::from_secs),
        };
        metrics
            .write_hosts(&[host("web-1", 3, Some(90)), host("we\"b", 0, None)])
            .unwrap();
        let text = std::fs::read_to_string(&metrics.path).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "litevault_host_newest_backup_age_seconds{host=\"web-1\",destination=\"s3\"} 90",
                "litevault_host_backups{host=\"web-1\",destination=\"s3\"} 3",
                "litevault_host_backups{host=\"we\\\"b\",destination=\"s3\"} 0",
            ]
        );
        assert!(
            text.contains("# TYPE litevault_host_backups gauge\n"),
            "{text}"
        );
    }
}
