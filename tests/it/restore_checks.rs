//! A restore into a folder does not open a database again to check it when a trusted key signed
//! the backup and its snapshot passed that check when it was taken: the restored bytes are, by
//! the signed BLAKE3, that checked snapshot. Without a trusted signature (or with `--deep` over a
//! snapshot that only passed `quick_check`) the check runs. Seen with the stock `strace`.

use std::process::Command;

use crate::harness::*;

/// `restore latest --to OUT` under strace: the report, and SQLite's opens of a file named
/// `name` (a check opening it).
fn restore_traced(
    env: &Env,
    out: &std::path::Path,
    extra: &[&str],
    name: &str,
) -> (serde_json::Value, Vec<String>) {
    env.write_config();
    let trace = env.path(&format!(
        "trace-{}",
        out.file_name().unwrap().to_string_lossy()
    ));
    let mut cmd = Command::new(require_tool("strace"));
    cmd.args(["-f", "-qq", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .arg(BIN)
        .arg("--config")
        .arg(env.config_path())
        .args(["--json", "restore", "latest", "--to"])
        .arg(out)
        .args(extra)
        .env_remove("LITEVAULT_CONFIG");
    let r = run_cmd(cmd);
    r.ok();
    let opened = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        // SQLite opens with O_NOFOLLOW; the unpacking creates the file and the sync opens it
        // read-only, neither with it.
        .filter(|l| l.contains(&format!("/{name}\"")) && l.contains("O_NOFOLLOW"))
        .map(str::to_string)
        .collect();
    (r.json(), opened)
}

fn env_signed(signed: bool) -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 300);
    env.encryption = Some("[encryption]\nnone = true\n".into());
    if signed {
        let key = env.path("signing.key");
        let r = env.run(&["key", "generate", key.to_str().unwrap(), "--signing"]);
        r.ok();
        env.extra = format!(
            "[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{}\"]\n",
            key.display(),
            r.stdout.trim()
        );
    }
    env.backup();
    env
}

#[test]
fn a_signed_snapshot_that_passed_its_check_is_not_opened_again_and_an_unsigned_one_is() {
    let signed = env_signed(true);
    let (report, opened) = restore_traced(&signed, &signed.path("out"), &[], "auth.db");
    assert_eq!(report["check_implied"], true, "{report:#}");
    assert!(
        opened.is_empty(),
        "the signed database was opened again: {opened:#?}"
    );
    assert_eq!(check_ledger(&signed.path("out/auth.db")), 300);

    // --deep asks for integrity_check, which the snapshot's quick_check does not imply.
    let (report, opened) = restore_traced(&signed, &signed.path("deep"), &["--deep"], "auth.db");
    assert!(report["check_implied"].is_null(), "{report:#}");
    assert!(
        !opened.is_empty(),
        "integrity_check did not open the database"
    );

    let unsigned = env_signed(false);
    let (report, opened) = restore_traced(&unsigned, &unsigned.path("out"), &[], "auth.db");
    assert!(report["check_implied"].is_null(), "{report:#}");
    assert!(!opened.is_empty(), "the unsigned database was not checked");
    assert_eq!(check_ledger(&unsigned.path("out/auth.db")), 300);
}
