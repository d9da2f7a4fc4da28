//! The open-format promise: a backup is recovered with the real `age`, `zstd`, `gzip`, `tar` and
//! `b3sum`, without litevault.

use std::fs;

use crate::harness::*;

fn recover_with_tools(compression: &str, encrypted: bool, pipeline: &str) {
    for tool in ["age", "zstd", "gzip", "tar", "b3sum"] {
        require_tool(tool);
    }
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 3000);
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(etc.join("tls")).unwrap();
    fs::write(etc.join("tls/ca.pem"), "ca\n").unwrap();
    env.extra = format!("[compression]\nalgorithm = \"{compression}\"\n");
    if encrypted {
        env.with_age_key();
    }
    let id = env.backup();
    let ext = match (compression, encrypted) {
        ("zstd", true) => "tar.zst.age",
        ("gzip", false) => "tar.gz",
        ("none", false) => "tar",
        _ => unreachable!(),
    };
    let archive = env.store().join(format!("{id}.{ext}"));
    assert!(archive.is_file(), "{:?}", env.stored_files());

    let out = env.path("by-hand");
    fs::create_dir_all(&out).unwrap();
    let script = pipeline
        .replace("F", &archive.display().to_string())
        .replace("KEY", &env.path("key.txt").display().to_string());
    sh(&script, &out).ok();
    sh("b3sum --check BLAKE3SUMS", &out)
        .ok()
        .stdout_has("auth.db: OK")
        .stdout_has("etc/tls/ca.pem: OK");
    assert_eq!(check_ledger(&out.join("auth.db")), 3000);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["backup_id"], id.as_str());
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["host"], "test-host");
    assert!(manifest["tool_version"].is_string() && manifest["hostname"].is_string());
    let db = &manifest["databases"][0];
    assert_eq!(db["page_size"], 4096);
    assert_eq!(db["journal_mode"], "wal");
    assert!(db["sqlite_version"].as_str().unwrap().starts_with('3'));
    assert!(db["user_version"].is_i64());
    let file = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "auth.db")
        .unwrap();
    assert_eq!(
        file["size"],
        fs::metadata(out.join("auth.db")).unwrap().len()
    );
}

#[test]
fn zstd_age_backup_is_recovered_with_age_zstd_and_tar() {
    recover_with_tools("zstd", true, "age -d -i KEY F | zstd -d | tar -x");
}

#[test]
fn gzip_backup_is_recovered_with_gzip_and_tar() {
    recover_with_tools("gzip", false, "gzip -dc F | tar -x");
}

#[test]
fn uncompressed_backup_is_a_plain_tar() {
    recover_with_tools("none", false, "tar -xf F");
}

#[test]
fn a_passphrase_backup_opens_with_the_same_passphrase() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 100);
    let pass = env.path("pass.txt");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.encryption = Some(format!(
        "[encryption]\npassphrase_file = \"{}\"\n",
        pass.display()
    ));
    let r = env.run(&["--json", "backup"]);
    r.ok();
    assert!(!r.stdout.contains("horse") && !r.stderr.contains("horse"));
    let id = r.json()["id"].as_str().unwrap().to_string();
    let out = env.path("out");
    let r = env.run(&["restore", &id, "--to", out.to_str().unwrap()]);
    r.ok();
    assert!(!r.stdout.contains("horse") && !r.stderr.contains("horse"));
    assert_eq!(check_ledger(&out.join("a.db")), 100);

    fs::write(&pass, "wrong horse\n").unwrap();
    let r = env.run(&["restore", &id, "--to", env.path("out2").to_str().unwrap()]);
    r.code(4);
    assert!(
        !r.stderr.contains("horse"),
        "the passphrase leaked: {}",
        r.stderr
    );
    assert!(!env.path("out2/a.db").exists());
}
