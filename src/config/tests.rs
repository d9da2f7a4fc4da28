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
        ("url = \"file://x/y\"", "destination[0].url"),
        // The unit tests' in-memory seam is no place for backups.
        ("scheme = \"memory\"", "destination[0].scheme"),
        (
            "url = \"s3://b/p\"\nregion = \"r\"\ncreate = true",
            "destination[0].create",
        ),
        (
            "scheme = \"webdav\"\ncreate = false\n[destination.options]\nroot = \"/x\"",
            "destination[0].create",
        ),
    ];
    let made = parse_str(&with("url = \"file:///x\"\ncreate = true")).unwrap();
    assert_eq!(
        made.destinations[0].location,
        Location::File {
            root: "/x".into(),
            create: true
        }
    );
    let made = parse_str(&with(
        "url = \"sftp://u@h:22/srv\"\nkey = \"k\"\ncreate = true",
    ))
    .unwrap();
    let Location::Sftp(sftp) = &made.destinations[0].location else {
        panic!("{:?}", made.destinations[0].location)
    };
    assert!(sftp.create);
    for (dest, key) in cases {
        let msg = err_of(&with(dest));
        assert!(msg.contains(key), "{dest}: expected {key} in {msg}");
    }
    let other = parse_str(&with(
        "scheme = \"webdav\"\n[destination.options]\nroot = \"/x\"",
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

fn parse_env(text: &str, credentials: Option<&str>) -> Result<Settings> {
    let env = |name: &str| {
        (name == "CREDENTIALS_DIRECTORY")
            .then_some(credentials)
            .flatten()
            .map(std::ffi::OsString::from)
    };
    parse_with_env(text, Path::new("/etc/litevault/litevault.toml"), &env)
}

#[test]
fn every_path_value_expands_the_credentials_directory() {
    // metrics_file is a top-level key: before the first table.
    let text = "metrics_file = \"$CREDENTIALS_DIRECTORY/m.prom\"\n".to_string()
        + &GOOD.replace(
            "url = \"file:///var/backups/litevault\"",
            "url = \"s3://bkt/pre?region=us-east-1\"\n\
             credentials_file = \"$CREDENTIALS_DIRECTORY/s3\"\n\
             sse_c_key_file = \"${CREDENTIALS_DIRECTORY}/sse-c\"\n\
             [[destination]]\nname = \"offsite\"\nurl = \"sftp://u@h:22/srv\"\n\
             key = \"$CREDENTIALS_DIRECTORY/ssh\"",
        );
    let text = format!(
        "{text}\n[encryption]\nrecipients_file = \"$CREDENTIALS_DIRECTORY/recipients\"\n\
         identity_file = \"${{CREDENTIALS_DIRECTORY}}/age-identity\"\n\
         [signing]\nkey_file = \"$CREDENTIALS_DIRECTORY/signing\"\n\
         [trust]\nallowed_signers_file = \"$CREDENTIALS_DIRECTORY/signers\"\n"
    );
    let dir = "/run/credentials/litevault-backup.service";
    let s = parse_env(&text, Some(dir)).unwrap();
    let p = |name: &str| Path::new(dir).join(name);
    let e = s.encryption.as_ref().unwrap();
    assert_eq!(
        e.recipients_file.as_deref(),
        Some(p("recipients").as_path())
    );
    assert_eq!(
        e.identity_file.as_deref(),
        Some(p("age-identity").as_path())
    );
    assert_eq!(s.signing.as_ref().unwrap().key_file, p("signing"));
    assert_eq!(s.trust.allowed_signers_file, Some(p("signers")));
    assert_eq!(s.metrics_file, Some(p("m.prom")));
    match &s.destinations[0].location {
        Location::S3(s3) => {
            assert_eq!(s3.credentials_file, Some(p("s3")));
            assert_eq!(s3.sse, Sse::Customer(p("sse-c")));
        }
        other => panic!("{other:?}"),
    }
    match &s.destinations[1].location {
        Location::Sftp(sftp) => assert_eq!(sftp.key, p("ssh")),
        other => panic!("{other:?}"),
    }
    // Paths without a variable are untouched: relative to the config's folder.
    assert_eq!(s.state_dir, Path::new("/etc/litevault/state"));

    // Unset, the first path that needs it (in the order the tables are checked) is named, with
    // what to do.
    let msg = format!("{:#}", parse_env(&text, None).unwrap_err());
    assert!(
        msg.contains("`encryption.recipients_file` uses $CREDENTIALS_DIRECTORY, which is not set (run under systemd with LoadCredential=, or write the path)"),
        "{msg}"
    );
}

#[test]
fn an_unset_credentials_directory_names_each_key() {
    let with = |dest: &str| GOOD.replace("url = \"file:///var/backups/litevault\"", dest);
    let cases = [
        (
            format!("{GOOD}\n[encryption]\nrecipients = [\"age1x\"]\nidentity_file = \"$CREDENTIALS_DIRECTORY/id\"\n"),
            "encryption.identity_file",
        ),
        (
            format!("{GOOD}\n[encryption]\npassphrase_file = \"${{CREDENTIALS_DIRECTORY}}/pass\"\n"),
            "encryption.passphrase_file",
        ),
        (
            format!("{GOOD}\n[signing]\nkey_file = \"$CREDENTIALS_DIRECTORY/signing\"\n"),
            "signing.key_file",
        ),
        (
            with("url = \"s3://b/p?region=x\"\ncredentials_file = \"$CREDENTIALS_DIRECTORY/s3\""),
            "destination[0].credentials_file",
        ),
        (
            with("url = \"sftp://u@h:22/srv\"\nkey = \"$CREDENTIALS_DIRECTORY/ssh\""),
            "destination[0].key",
        ),
        (
            GOOD.replace("path = \"etc\"", "path = \"$CREDENTIALS_DIRECTORY/etc\""),
            "source[1].path",
        ),
        (
            GOOD.replace("state_dir = \"state\"", "state_dir = \"$CREDENTIALS_DIRECTORY\""),
            "`state_dir`",
        ),
    ];
    for (text, key) in cases {
        let msg = format!("{:#}", parse_env(&text, None).unwrap_err());
        assert!(
            msg.contains(key) && msg.contains("$CREDENTIALS_DIRECTORY, which is not set"),
            "expected {key} in: {msg}"
        );
        parse_env(&text, Some("/run/credentials/x")).unwrap();
    }
}

#[test]
fn other_variables_in_paths_are_config_errors() {
    let text = GOOD.replace("state_dir = \"state\"", "state_dir = \"$HOME/state\"");
    let msg = format!(
        "{:#}",
        parse_env(&text, Some("/run/credentials/x")).unwrap_err()
    );
    assert!(
        msg.contains("`state_dir` uses $HOME, which litevault does not expand"),
        "{msg}"
    );
    let text = GOOD.replace("state_dir = \"state\"", "state_dir = \"st$$ate\"");
    assert_eq!(
        parse_env(&text, None).unwrap().state_dir,
        Path::new("/etc/litevault/st$ate")
    );
}

#[test]
fn a_sqlite_path_with_a_pattern_splits_into_its_folder_and_the_pattern() {
    let text = GOOD.replace(
        "path = \"/srv/data/auth.db\"",
        "path = \"/srv/app/tenants/**/*.db\"\nexclude = [\"old/**\"]",
    );
    let s = parse_str(&text).unwrap();
    assert_eq!(s.sources[0].path, Path::new("/srv/app/tenants"));
    let d = s.sources[0].discover.as_ref().unwrap();
    assert!(d.matches("acme.db") && d.matches("eu/acme.db"));
    assert!(!d.matches("acme.db-wal") && !d.matches("notes.txt"));
    assert!(!d.matches("old/gone.db"), "exclude is ignored");
    assert!(d.strict());
    // `*` stays within a folder; `**` crosses them.
    let text = GOOD.replace(
        "path = \"/srv/data/auth.db\"",
        "path = \"/srv/app\"\npattern = \"*.db\"",
    );
    let s = parse_str(&text).unwrap();
    let d = s.sources[0].discover.as_ref().unwrap();
    assert!(d.matches("a.db") && !d.matches("sub/a.db"));
}

#[test]
fn source_patterns_that_climb_out_or_do_not_fit_the_kind_name_their_key() {
    for (edit, key) in [
        ("pattern = \"../other/*.db\"", "source[0].pattern"),
        ("pattern = \"/etc/*.db\"", "source[0].pattern"),
        ("exclude = [\"a\", \"../x\"]", "source[0].exclude[1]"),
        ("pattern = \"[\"", "source[0].pattern"),
        ("as_bytes = [\"x.db\"]", "source[0].as_bytes"),
    ] {
        let text = GOOD.replace(
            "path = \"/srv/data/auth.db\"",
            &format!("path = \"/srv/data\"\n{edit}"),
        );
        let msg = err_of(&text);
        assert!(msg.contains(&format!("`{key}`")), "{edit}: {msg}");
    }
    let text = GOOD.replace("path = \"etc\"", "path = \"etc\"\npattern = \"*.db\"");
    let msg = err_of(&text);
    assert!(
        msg.contains("`source[1].pattern`") && msg.contains("sqlite"),
        "{msg}"
    );
    let text = GOOD.replace(
        "path = \"/srv/data/auth.db\"",
        "path = \"/srv/*/x.db\"\npattern = \"*.db\"",
    );
    assert!(err_of(&text).contains("`source[0].pattern`"));
}
