//! The differential test against OpenSSH: one corpus of allowed_signers files and signatures
//! (keys and signatures made by the real `ssh-keygen`), judged by litevault's [`Verifier`] and by
//! `ssh-keygen -Y verify -n litevault`, which must agree on every pair.
//!
//! Every line lists the principal passed with `-I`, since litevault ignores principals (as
//! `ssh-keygen -Y find-principals` does). Two differences are by design, and asserted as such:
//! - Time: ssh-keygen checks a key's validity window at one verify time; litevault checks it at
//!   the signing time and now. So litevault accepts exactly when ssh-keygen accepts both with
//!   `-Overify-time=` the signing time and without it.
//! - A line ssh-keygen would log and skip (malformed, unknown option, `cert-authority`), and a
//!   file with no key for litevault, is a config error to litevault: it refuses to judge at
//!   all, so it is never looser than ssh-keygen. For those the corpus records what ssh-keygen
//!   does instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::*;
use crate::exit::Exit;

const PRINCIPAL: &str = "ops@example.com";

/// Keys `a`, `b`, `c` and signatures over one sidecar, all made by ssh-keygen.
struct Lab {
    dir: tempfile::TempDir,
    message: PathBuf,
    keys: Vec<(&'static str, String)>,
    /// (name, file): `a`, `b`, `c` sign for litevault; `a-git` is a's signature for the git
    /// namespace; `a-other` is a's litevault signature over another message.
    signatures: Vec<(&'static str, PathBuf)>,
}

fn ssh_keygen(args: &[&str], dir: &Path) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen (OpenSSH) must be installed for this test");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut keys = Vec::new();
        for name in ["a", "b", "c"] {
            ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", name], d);
            let public = fs::read_to_string(d.join(format!("{name}.pub"))).unwrap();
            let key: Vec<&str> = public.split_whitespace().take(2).collect();
            keys.push((name, key.join(" ")));
        }
        let message = d.join("sidecar.json");
        fs::write(&message, b"{\"format\":\"litevault-sidecar\",\"n\":1}\n").unwrap();
        fs::write(
            d.join("other.json"),
            b"{\"format\":\"litevault-sidecar\",\"n\":2}\n",
        )
        .unwrap();
        let mut signatures = Vec::new();
        for (name, key, namespace, file) in [
            ("a", "a", "litevault", "sidecar.json"),
            ("b", "b", "litevault", "sidecar.json"),
            ("c", "c", "litevault", "sidecar.json"),
            ("a-git", "a", "git", "sidecar.json"),
            ("a-other", "a", "litevault", "other.json"),
        ] {
            ssh_keygen(&["-q", "-Y", "sign", "-f", key, "-n", namespace, file], d);
            let sig = d.join(format!("{name}.sig"));
            fs::rename(d.join(format!("{file}.sig")), &sig).unwrap();
            signatures.push((name, sig));
        }
        Lab {
            dir,
            message,
            keys,
            signatures,
        }
    }

    /// `text` with `{a}`, `{b}`, `{c}` replaced by those public keys.
    fn file(&self, case: &str, text: &str) -> PathBuf {
        let mut text = text.to_string();
        for (name, key) in &self.keys {
            text = text.replace(&format!("{{{name}}}"), key);
        }
        let path = self.dir.path().join(format!("{case}.allowed_signers"));
        fs::write(&path, text).unwrap();
        path
    }

    /// Signatures ssh-keygen accepts from `file`, at `verify_time` (`None`: now).
    fn ssh_keygen_accepts(&self, file: &Path, verify_time: Option<&str>) -> Vec<&'static str> {
        let mut accepted = Vec::new();
        for (name, sig) in &self.signatures {
            let mut cmd = Command::new("ssh-keygen");
            cmd.args(["-Y", "verify", "-f"])
                .arg(file)
                .args(["-I", PRINCIPAL, "-n", NAMESPACE, "-s"])
                .arg(sig);
            if let Some(t) = verify_time {
                cmd.arg(format!("-Overify-time={t}"));
            }
            let status = cmd
                .stdin(fs::File::open(&self.message).unwrap())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("ssh-keygen (OpenSSH) must be installed for this test");
            if status.success() {
                accepted.push(*name);
            }
        }
        accepted
    }

    /// Signatures litevault's policy from `file` trusts, signed at `signed_at`.
    fn litevault_accepts(&self, file: &Path, signed_at: SystemTime) -> Result<Vec<&'static str>> {
        let policy = Verifier::load(&[], Some(file))?;
        let body = fs::read(&self.message).unwrap();
        Ok(self
            .signatures
            .iter()
            .filter(|(_, sig)| {
                policy
                    .judge(&body, Some(&fs::read(sig).unwrap()), signed_at)
                    .is_good()
            })
            .map(|(name, _)| *name)
            .collect())
    }
}

/// When the sidecar says it was signed (`None`: just now), as ssh-keygen's verify-time.
fn signed_at(verify_time: Option<&str>) -> SystemTime {
    match verify_time {
        None => SystemTime::now(),
        Some(t) => {
            let secs = timestamp::parse_in(t, &jiff::tz::TimeZone::UTC).unwrap();
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        }
    }
}

enum Expect {
    /// Both accept exactly these signatures.
    Agree(&'static [&'static str]),
    /// litevault refuses the file as a config error whose message holds this; ssh-keygen skips
    /// the offending line and accepts these.
    Refused(&'static str, &'static [&'static str]),
}

struct Case {
    name: &'static str,
    text: &'static str,
    /// The signing time (ssh-keygen's `-Overify-time=`), `None`: now.
    at: Option<&'static str>,
    expect: Expect,
}

const fn agree(name: &'static str, text: &'static str, accepted: &'static [&'static str]) -> Case {
    Case {
        name,
        text,
        at: None,
        expect: Expect::Agree(accepted),
    }
}

const fn agree_at(
    name: &'static str,
    text: &'static str,
    at: &'static str,
    accepted: &'static [&'static str],
) -> Case {
    Case {
        name,
        text,
        at: Some(at),
        expect: Expect::Agree(accepted),
    }
}

const fn refused(
    name: &'static str,
    text: &'static str,
    why: &'static str,
    ssh_keygen: &'static [&'static str],
) -> Case {
    Case {
        name,
        text,
        at: None,
        expect: Expect::Refused(why, ssh_keygen),
    }
}

const CORPUS: &[Case] = &[
    agree("one-key", "ops@example.com {a}\n", &["a"]),
    agree(
        "comments-and-blank-lines",
        "# allowed signers\n\n   \n\t# indented comment\nops@example.com {a}\n\n",
        &["a"],
    ),
    agree("no-final-newline", "ops@example.com {a}", &["a"]),
    agree(
        "several-principals",
        "dev@example.com,ops@example.com,*@backup.example {a}\n",
        &["a"],
    ),
    agree("principal-pattern", "*@example.com {a}\n", &["a"]),
    agree(
        "quoted-principals-with-a-space",
        "\"odd name,ops@example.com\" {a}\n",
        &["a"],
    ),
    agree(
        "key-comment-and-tabs",
        "ops@example.com\tnamespaces=\"litevault\"\t{a} laptop key, 2024\n",
        &["a"],
    ),
    agree(
        "namespaces-exact",
        "ops@example.com namespaces=\"litevault\" {a}\n",
        &["a"],
    ),
    agree(
        "namespaces-list-with-comma",
        "ops@example.com namespaces=\"git,litevault\" {a}\n",
        &["a"],
    ),
    agree("namespaces-wildcard", "ops@example.com namespaces=\"lite*\" {a}\n", &["a"]),
    agree("namespaces-any", "ops@example.com namespaces=\"*\" {a}\n", &["a"]),
    agree(
        "namespaces-question-mark",
        "ops@example.com namespaces=\"git,l?tevault,file\" {a}\n",
        &["a"],
    ),
    agree(
        "namespaces-negation-rules-out",
        "ops@example.com namespaces=\"*,!litevault\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "namespaces-negated-other",
        "ops@example.com namespaces=\"!git,*\" {a}\n",
        &["a"],
    ),
    agree(
        "namespaces-only-negation",
        "ops@example.com namespaces=\"!git\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "namespaces-other-only",
        "ops@example.com namespaces=\"git\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "namespaces-space-after-comma",
        "ops@example.com namespaces=\"git, litevault\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "namespaces-quoted-spaces",
        "ops@example.com namespaces=\"my files,litevault\" {a}\n",
        &["a"],
    ),
    agree(
        "namespaces-escaped-quote",
        "ops@example.com namespaces=\"say \\\"hi\\\",litevault\" {a}\n",
        &["a"],
    ),
    agree(
        "keywords-in-any-case",
        "ops@example.com NAMESPACES=\"litevault\",Valid-After=\"20010101Z\" {a}\n",
        &["a"],
    ),
    agree(
        "empty-option-between-commas",
        "ops@example.com namespaces=\"litevault\",,valid-after=\"20010101Z\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-after-past-date-z",
        "ops@example.com valid-after=\"20010101Z\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-after-past-minutes",
        "ops@example.com valid-after=\"200101011230Z\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-after-past-seconds-lowercase-z",
        "ops@example.com valid-after=\"20010101123045z\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-after-future-z",
        "ops@example.com valid-after=\"20990101Z\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "valid-after-future-local",
        "ops@example.com valid-after=\"20990101\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "valid-before-past-z",
        "ops@example.com valid-before=\"20010101Z\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "valid-before-past-local-minutes",
        "ops@example.com valid-before=\"200101011230\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "valid-before-future-local",
        "ops@example.com valid-before=\"20990101\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-before-future-utc-suffix",
        "ops@example.com valid-before=\"20990101000000UTC\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-after-and-before",
        "ops@example.com valid-after=\"20010101\",valid-before=\"20990101123000Z\" {a}\n",
        &["a"],
    ),
    agree(
        "valid-before-rolled-over-date",
        "ops@example.com valid-before=\"20240230Z\" {a}\nops@example.com {b}\n",
        &["b"],
    ),
    agree(
        "several-keys-some-match",
        "ops@example.com {b}\nops@example.com namespaces=\"git\" {a}\nops@example.com {c}\n",
        &["b", "c"],
    ),
    agree(
        "same-key-listed-thrice",
        "ops@example.com namespaces=\"git\" {a}\nops@example.com valid-before=\"20010101Z\" {a}\nops@example.com namespaces=\"litevault\" {a}\n",
        &["a"],
    ),
    // Signing times: windows that also hold the present, so both checks are well defined.
    agree_at(
        "signed-at-valid-after",
        "ops@example.com valid-after=\"20250101Z\" {a}\n",
        "20250101000000Z",
        &["a"],
    ),
    agree_at(
        "signed-a-second-before-valid-after",
        "ops@example.com valid-after=\"20250101Z\" {a}\n",
        "20241231235959Z",
        &[],
    ),
    agree_at(
        "signed-at-valid-before",
        "ops@example.com valid-before=\"20990101Z\" {a}\n",
        "20990101000000Z",
        &["a"],
    ),
    agree_at(
        "signed-a-second-after-valid-before",
        "ops@example.com valid-before=\"20990101Z\" {a}\n",
        "20990101000001Z",
        &[],
    ),
    // The windows that differ: ssh-keygen accepts at one of the two times, litevault at neither.
    agree_at(
        "valid-now-not-when-signed",
        "ops@example.com valid-after=\"20230101Z\" {a}\nops@example.com {b}\n",
        "20200601000000Z",
        &["b"],
    ),
    agree_at(
        "valid-when-signed-not-now",
        "ops@example.com valid-before=\"20240101Z\" {a}\nops@example.com {b}\n",
        "20230601000000Z",
        &["b"],
    ),
    refused(
        "cert-authority",
        "ops@example.com cert-authority {a}\nops@example.com {b}\n",
        "line 1: cert-authority",
        &["b"],
    ),
    refused(
        "cert-authority-among-options",
        "ops@example.com {b}\nops@example.com namespaces=\"litevault\",cert-authority {a}\n",
        "line 2: cert-authority",
        &["b"],
    ),
    refused(
        "namespaces-unquoted",
        "ops@example.com namespaces=litevault {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "unknown-option",
        "ops@example.com {b}\nops@example.com verify-required {a}\n",
        "line 2",
        &["b"],
    ),
    refused(
        "options-end-with-a-comma",
        "ops@example.com namespaces=\"litevault\", {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "namespaces-twice",
        "ops@example.com namespaces=\"git\",namespaces=\"litevault\" {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "valid-after-not-a-time",
        "ops@example.com valid-after=\"2001\" {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "valid-before-month-13",
        "ops@example.com valid-before=\"20991301Z\" {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "valid-before-not-after-valid-after",
        "ops@example.com valid-after=\"20990101Z\",valid-before=\"20010101Z\" {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "options-quote-never-closed",
        "ops@example.com namespaces=\"litevault {a}\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "no-key-after-options",
        "ops@example.com namespaces=\"litevault\"\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "key-cut-short",
        "ops@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqn\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused(
        "principal-only",
        "ops@example.com\nops@example.com {b}\n",
        "line 1",
        &["b"],
    ),
    refused("only-comments", "# nobody yet\n\n", "no key", &[]),
    refused(
        "only-other-namespaces",
        "ops@example.com namespaces=\"git\" {a}\nops@example.com namespaces=\"file,!litevault\" {b}\n",
        "no key",
        &[],
    ),
];

#[test]
fn differential_ssh_keygen_agrees_with_litevault_on_the_allowed_signers_corpus() {
    let lab = Lab::new();
    let mut disagreements = Vec::new();
    for case in CORPUS {
        let file = lab.file(case.name, case.text);
        let ssh_at = lab.ssh_keygen_accepts(&file, case.at);
        let ssh_now = match case.at {
            None => ssh_at.clone(),
            Some(_) => lab.ssh_keygen_accepts(&file, None),
        };
        // Valid at the signing time and now: what litevault asks of a key.
        let ssh_both: Vec<&str> = ssh_at
            .iter()
            .copied()
            .filter(|s| ssh_now.contains(s))
            .collect();
        let ours = lab.litevault_accepts(&file, signed_at(case.at));
        match (&case.expect, ours) {
            (Expect::Agree(want), Ok(ours)) => {
                if ours != ssh_both || ours != *want {
                    disagreements.push(format!(
                        "{}: litevault accepts {ours:?}, ssh-keygen {ssh_both:?}, the corpus says {want:?}",
                        case.name
                    ));
                }
            }
            (Expect::Refused(why, ssh_keygen), Err(err)) => {
                let message = crate::exit::describe(&err);
                let names_file = message.contains(&file.display().to_string());
                let quotes_key = lab
                    .keys
                    .iter()
                    .any(|(_, k)| message.contains(k.split(' ').nth(1).unwrap()));
                if crate::exit::classify(&err) != Exit::Usage
                    || !message.contains(why)
                    || !names_file
                    || quotes_key
                {
                    disagreements.push(format!(
                        "{}: the config error is not the one expected ({why:?}, naming the file, no key material): {message}",
                        case.name
                    ));
                }
                if ssh_both != *ssh_keygen {
                    disagreements.push(format!(
                        "{}: ssh-keygen accepts {ssh_both:?}, the corpus says it skips the line and accepts {ssh_keygen:?}",
                        case.name
                    ));
                }
            }
            (Expect::Agree(_), Err(err)) => disagreements.push(format!(
                "{}: litevault refuses the file: {err:#}",
                case.name
            )),
            (Expect::Refused(..), Ok(ours)) => disagreements.push(format!(
                "{}: litevault loads the file (accepting {ours:?}); it must refuse it",
                case.name
            )),
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn differential_ssh_keygen_a_key_valid_now_but_not_when_it_signed_is_refused() {
    let lab = Lab::new();
    let file = lab.file(
        "valid-since-2023",
        "ops@example.com valid-after=\"20230101Z\" {a}\n",
    );
    let signed = "20200601000000Z";
    assert_eq!(
        lab.ssh_keygen_accepts(&file, Some(signed)),
        Vec::<&str>::new(),
        "ssh-keygen at the signing time"
    );
    assert_eq!(
        lab.ssh_keygen_accepts(&file, None),
        vec!["a"],
        "ssh-keygen now"
    );
    assert_eq!(
        lab.litevault_accepts(&file, signed_at(Some(signed)))
            .unwrap(),
        Vec::<&str>::new()
    );
    let policy = Verifier::load(&[], Some(&file)).unwrap();
    let sig = fs::read(&lab.signatures[0].1).unwrap();
    let verdict = policy.judge(
        &fs::read(&lab.message).unwrap(),
        Some(&sig),
        signed_at(Some(signed)),
    );
    assert!(
        matches!(&verdict, Verdict::OutsideWindow { why, .. } if why.contains("valid-after")),
        "{verdict}"
    );
    assert!(
        lab.litevault_accepts(&file, SystemTime::now())
            .unwrap()
            .contains(&"a"),
        "signed now, it is trusted"
    );
}

/// ssh-keygen in time zone `tz`: does a key with `valid-after="value"` verify at `t`?
fn valid_after_holds(lab: &Lab, tz: &str, value: &str, t: i64) -> bool {
    let file = lab.file(
        "local-time",
        &format!("{PRINCIPAL} valid-after=\"{value}\" {{a}}\n"),
    );
    let at = jiff::Timestamp::from_second(t)
        .unwrap()
        .strftime("%Y%m%d%H%M%SZ")
        .to_string();
    Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&file)
        .args(["-I", PRINCIPAL, "-n", NAMESPACE, "-s"])
        .arg(&lab.signatures[0].1)
        .arg(format!("-Overify-time={at}"))
        .env("TZ", tz)
        .stdin(fs::File::open(&lab.message).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ssh-keygen (OpenSSH) must be installed for this test")
        .success()
}

#[test]
fn differential_ssh_keygen_reads_local_times_to_the_same_second() {
    let lab = Lab::new();
    // Each time as litevault reads it must be the first second ssh-keygen lets the key sign.
    for tz in [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
    ] {
        let zone = jiff::tz::TimeZone::get(tz).expect("tzdata (Debian's tzdata) must be installed");
        for value in [
            "20240115",
            "20240115123456",
            "20240715",
            "202407151200",
            "20240715123456",
            "20241027023000",
            "20240331023000",
            "20240715123456Z",
        ] {
            let t = timestamp::parse_in(value, &zone).unwrap();
            assert!(
                valid_after_holds(&lab, tz, value, t) && !valid_after_holds(&lab, tz, value, t - 1),
                "TZ={tz} valid-after={value}: litevault reads {t}, ssh-keygen does not"
            );
        }
    }
}
