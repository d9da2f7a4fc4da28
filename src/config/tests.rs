//! Table-driven tests of the config file: every key's errors name the key and line.
use super::*;
use crate::storage::url::{Location, Sse};

const GOOD: &str = r#"
name = "radius-prod"
state_dir = "state"
[[source]]
name = "auth.db"
path = "/srv/data/auth.db"
kind = "sqlite"
[[source]]
name = "etc"
path = "etc"
kind = "dir"
[compression]
algorithm = "gzip"
level = 9
[retention]
keep_last = 3
keep_within = "7d"
[[destination]]
name = "local"
url = "file:///var/backups/litevault"
"#;

fn parse_str(text: &str) -> Result<Settings> {
    parse(text, Path::new("/etc/litevault/litevault.toml"))
}

fn err_of(text: &str) -> String {
    format!("{:#}", parse_str(text).unwrap_err())
}

#[test]
fn a_good_config_resolves_relative_paths_against_its_folder() {
    let s = parse_str(GOOD).unwrap();
    assert_eq!(s.state_dir, Path::new("/etc/litevault/state"));
    assert_eq!(s.sources[1].path, Path::new("/etc/litevault/etc"));
    assert_eq!(s.sources[0].check, Check::Quick);
    assert_eq!(s.compression, Compression::Gzip { level: 9 });
    assert_eq!(s.retention.keep_last, Some(3));
    assert_eq!(
        s.retention.keep_within,
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(s.destinations[0].retries, 5);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = GOOD.replace("keep_last = 3", "keep_lats = 3");
    let msg = err_of(&text);
    assert!(msg.contains("keep_lats"), "{msg}");
    assert!(msg.contains("line 16"), "{msg}");
}

#[test]
fn parse_errors_do_not_echo_the_line() {
    let text = GOOD.replace("keep_last = 3", "aws_secret_access_key = \"SECRETVALUE\"");
    let msg = err_of(&text);
    assert!(
        msg.contains("aws_secret_access_key") && msg.contains("line 16"),
        "{msg}"
    );
    assert!(!msg.contains("SECRETVALUE"), "{msg}");
    let msg = err_of("name = \"x\"\nstate_dir = \"SECRET\" oops\n");
    assert!(msg.contains("line 2") && !msg.contains("SECRET"), "{msg}");
}

#[test]
fn validation_errors_name_the_key() {
    let cases = [
        (GOOD.replace("level = 9", "level = 12"), "compression.level"),
        (GOOD.replace("\"gzip\"", "\"lz4\""), "compression.algorithm"),
        (
            GOOD.replace("name = \"etc\"", "name = \"auth.db\""),
            "source[1].name",
        ),
        (
            GOOD.replace("name = \"etc\"", "name = \"../etc\""),
            "source[1].name",
        ),
        (
            GOOD.replace("name = \"etc\"", "name = \"manifest.json\""),
            "source[1].name",
        ),
        (
            GOOD.replace("\"7d\"", "\"a week\""),
            "retention.keep_within",
        ),
        (
            GOOD.replace("file:///var/backups/litevault", "gopher://x"),
            "destination[0].url",
        ),
        (GOOD.replace("radius-prod", "radius prod"), "`name`"),
    ];
    for (text, key) in cases {
        let msg = err_of(&text);
        assert!(msg.contains(key), "expected {key} in: {msg}");
    }
}

#[test]
fn encryption_needs_a_key_and_cannot_mix_passphrase_and_recipients() {
    let msg = err_of(&format!(
        "{GOOD}\n[encryption]\nidentity_file = \"id.txt\"\n"
    ));
    assert!(msg.contains("encryption"), "{msg}");
    let msg = err_of(&format!(
        "{GOOD}\n[encryption]\nrecipients = [\"age1x\"]\npassphrase_file = \"p\"\n"
    ));
    assert!(msg.contains("passphrase_file"), "{msg}");
}

#[test]
fn selecting_an_unknown_destination_lists_the_known_ones() {
    let s = parse_str(GOOD).unwrap();
    let err = s.select_destinations(&["offsite".into()]).unwrap_err();
    assert!(format!("{err}").contains("known: local"), "{err}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = include_str!("../../examples/litevault.toml");
    let s = parse(text, Path::new("/etc/litevault/litevault.toml")).unwrap();
    assert_eq!(s.sources.len(), 7);
    assert!(s.encryption.is_some());
    assert!(!s.retention.is_empty());
}

#[test]
fn destinations_check_their_backend_keys() {
    let with = |dest: &str| GOOD.replace("url = \"file:///var/backups/litevault\"", dest);
    let ok = parse_str(&with("url = \"s3://bkt/pre?endpoint=http://127.0.0.1:9000&region=us-east-1\"\nsse = \"AES256\"\nbandwidth_limit = \"10MiB\"")).unwrap();
    assert_eq!(ok.destinations[0].bandwidth_limit, Some(10 << 20));
    match &ok.destinations[0].location {
        Location::S3(s3) => {
            assert_eq!(s3.bucket, "bkt");
            assert_eq!(s3.sse, Sse::S3);
        }
        other => panic!("{other:?}"),
    }
    let cases = [
        ("url = \"s3://bkt/pre\"", "destination[0].region"),
        ("url = \"sftp://u@h:22/srv\"", "destination[0].key"),
        (
            "url = \"sftp://u@h:22/srv\"\nkey = \"k\"\nhost_key_check = \"yolo\"",
            "destination[0].host_key_check",
        ),
        ("url = \"file:///x\"\nkey = \"k\"", "destination[0].key"),
        (
            "url = \"file:///x\"\nregion = \"eu\"",
            "destination[0].region",
        ),
        (
            "url = \"s3://b/p?region=x\"\nsse = \"rot13\"",
            "destination[0].sse",
        ),
        (
            "url = \"file:///x\"\nscheme = \"memory\"",
            "destination[0].scheme",
        ),
        (
            "url = \"file:///x\"\nbandwidth_limit = \"fast\"",
            "destination[0].bandwidth_limit",
        ),
        (
            "url = \"file:///x\"\ntimeout = \"0s\"",
            "destination[0].timeout",
        ),
    ];
    for (dest, key) in cases {
        let msg = err_of(&with(dest));
        assert!(msg.contains(key), "{dest}: expected {key} in {msg}");
    }
    let other = parse_str(&with(
        "scheme = \"memory\"\n[destination.options]\nroot = \"/x\"",
    ))
    .unwrap();
    assert!(matches!(
        other.destinations[0].location,
        Location::Other { .. }
    ));
}

#[test]
fn config_path_precedence() {
    let flag = Path::new("/a.toml");
    assert_eq!(locate(Some(flag), Some("/b.toml".into())), flag);
    assert_eq!(locate(None, Some("/b.toml".into())), Path::new("/b.toml"));
    assert_eq!(locate(None, None), Path::new(crate::cli::DEFAULT_CONFIG));
}
