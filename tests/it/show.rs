//! `litevault show`: a backup's manifest for a person, from its sidecar alone. A full and an
//! incremental backup, as text and as JSON, checked against the databases themselves; no
//! identity and no archive needed; damaged and untrusted backups shown, marked, exit 4.

use std::fs;
use std::path::Path;

use rusqlite::Connection;
use serde_json::Value;

use crate::harness::*;

/// `[incremental]`, an encrypted backup of a WAL ledger `auth.db` (user_version 42), a database
/// `static.db` that never changes, and a config folder.
fn env_with_data() -> Env {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 500);
    Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 42;")
        .unwrap();
    let fixed = env.add_sqlite("static.db");
    Connection::open(&fixed)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")
        .unwrap();
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("server.conf"), "listen = 1812\n").unwrap();
    env.with_age_key();
    env
}

fn show_json(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json", "show"];
    all.extend_from_slice(args);
    let r = env.run(&all);
    let v = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", r.stdout, r.stderr));
    (r.code, v)
}

fn pragma(db: &Path, name: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

fn database<'a>(report: &'a Value, source: &str) -> &'a Value {
    report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source"] == source)
        .unwrap_or_else(|| panic!("no database {source}: {report:#}"))
}

fn sidecar(env: &Env, id: &str) -> Value {
    serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap()
}

fn archive_path(env: &Env, id: &str) -> std::path::PathBuf {
    env.store()
        .join(sidecar(env, id)["archive"]["object"].as_str().unwrap())
}

#[test]
fn show_describes_a_full_and_an_incremental_backup_as_text_and_json() {
    let env = env_with_data();
    let db = env.path("data/auth.db");
    let full = env.backup();
    let pages_at_full = pragma(&db, "page_count");
    let conn = Connection::open(&db).unwrap();
    for k in 501..=510 {
        ledger_step(&conn, k);
    }
    drop(conn);
    let inc = env.backup();
    assert_ne!(full, inc);

    // The full backup, for a person.
    let r = env.run(&["show", &full]);
    r.ok();
    let text = &r.stdout;
    for needle in [
        &format!("backup {full}\n"),
        "kind         full\n",
        "encrypted with age to 1 recipient",
        &public_key(&env.path("key.txt")),
        "signature    not signed",
        "destinations local: ok",
        "server.conf",
        &format!(
            "auth.db: SQLite {}, {pages_at_full} pages of 4096 bytes",
            rusqlite::version()
        ),
        "journal_mode wal, user_version 42, passed quick_check",
        "stored whole, as auth.db",
        "table entries   500 rows",
        "table accounts  2 rows",
        "static.db: SQLite",
    ] {
        assert!(text.contains(needle), "show lacks {needle:?}:\n{text}");
    }
    assert!(
        !text.contains("chain "),
        "a full backup has no chain line:\n{text}"
    );
    let source_line = text
        .lines()
        .find(|l| l.starts_with("  auth.db ") && l.contains(" sqlite "))
        .unwrap_or_else(|| panic!("no source line for auth.db:\n{text}"));
    assert!(
        source_line.contains(&db.display().to_string()) && source_line.contains("1 file,"),
        "{source_line}"
    );

    // The incremental, as JSON, against the databases and the stored sidecar.
    let (code, v) = show_json(&env, &["latest"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["id"], inc.as_str());
    assert_eq!(v["kind"], "incremental");
    assert_eq!(v["parent"], full.as_str());
    assert_eq!(v["full"], full.as_str());
    assert_eq!(v["chain"], serde_json::json!([full, inc]));
    assert_eq!(v["host"], "test-host");
    assert_eq!(v["archive"]["encryption"], "age");
    assert_eq!(
        v["archive"]["recipients"],
        serde_json::json!([public_key(&env.path("key.txt"))])
    );
    let stored = fs::metadata(archive_path(&env, &inc)).unwrap().len();
    assert_eq!(v["archive"]["bytes"], stored);
    assert_eq!(v["signature"]["status"], "not-checked");
    assert_eq!(v["signature"]["signed"], false);
    assert_eq!(v["shown_from"], "local");
    assert_eq!(
        v["destinations"],
        serde_json::json!([{"destination": "local", "status": "ok"}])
    );
    assert_eq!(v["problems"], serde_json::json!([]));
    let auth = database(&v, "auth.db");
    assert_eq!(auth["page_size"], 4096);
    assert_eq!(auth["page_count"], pragma(&db, "page_count"));
    assert_eq!(auth["user_version"], 42);
    assert_eq!(auth["journal_mode"], "wal");
    assert_eq!(auth["sqlite_version"], rusqlite::version());
    assert_eq!(auth["row_counts"]["entries"], 510);
    assert_eq!(auth["row_counts"]["counter"], 1);
    assert_eq!(auth["stored"]["as"], "wal");
    let frames = auth["stored"]["frames"].as_u64().unwrap();
    assert!(frames > 0, "{auth:#}");
    // The WAL file is listed among the files with its size: a 32-byte header, then per frame
    // a 24-byte header and a page.
    let wal = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "auth.db-wal")
        .unwrap_or_else(|| panic!("no WAL file: {v:#}"));
    assert_eq!(wal["size"], 32 + frames * (24 + 4096));
    assert_eq!(auth["stored"]["wal_bytes"], wal["size"]);
    assert_eq!(database(&v, "static.db")["stored"]["as"], "unchanged");
    let sources: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["auth.db", "static.db", "etc"]);
    let conf = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "etc/server.conf")
        .unwrap();
    assert_eq!(conf["size"], 14);
    assert_eq!(
        conf["blake3"].as_str().unwrap(),
        blake3::hash(b"listen = 1812\n").to_hex().as_str()
    );
    // Everything the sidecar's manifest says about the databases, and nothing else.
    let manifest = &sidecar(&env, &inc)["manifest"];
    assert_eq!(
        manifest["databases"].as_array().unwrap().len(),
        v["databases"].as_array().unwrap().len()
    );

    // The incremental, for a person: its chain and how each database is held.
    let r = env.run(&["show", &inc]);
    r.ok()
        .stdout_has(&format!("chain        {full} -> {inc} (2 backups to read)"))
        .stdout_has(&format!("stored as a WAL of {frames} frame"))
        .stdout_has("stored not at all: unchanged since the parent")
        .stdout_has("table entries   510 rows");
}

#[test]
fn show_needs_no_identity_and_never_reads_the_archive() {
    let mut env = env_with_data();
    let id = env.backup();
    // The reading host has only the public recipient, and no identity anywhere.
    let with_identity = env.encryption.clone();
    let recipient = public_key(&env.path("key.txt"));
    env.encryption = Some(format!("[encryption]\nrecipients = [\"{recipient}\"]\n"));
    let key = env.path("key.txt");
    fs::rename(&key, env.path("elsewhere.txt")).unwrap();
    // The archive's bytes are replaced by others of the same size: anything that read them
    // would fail; show does not.
    let archive = archive_path(&env, &id);
    let size = fs::metadata(&archive).unwrap().len() as usize;
    fs::write(&archive, vec![0x5a; size]).unwrap();
    let (code, v) = show_json(&env, &[&id]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["archive"]["encryption"], "age");
    assert_eq!(database(&v, "auth.db")["row_counts"]["entries"], 500);
    env.run(&["show", "latest"])
        .ok()
        .stdout_has("encrypted with age");
    // verify does read it (with the identity back), and finds it bad: the swap was real.
    fs::rename(env.path("elsewhere.txt"), &key).unwrap();
    env.encryption = with_identity;
    env.run(&["verify", &id]).code(4);
}

#[test]
fn a_damaged_backup_is_shown_marked_and_exits_4() {
    let env = env_with_data();
    let full = env.backup();
    let inc = env.backup();
    let archive = archive_path(&env, &full);
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();

    // The full backup itself: damaged, still described.
    let r = env.run(&["show", &full]);
    r.code(4)
        .stdout_has(&format!("backup {full}  DAMAGED"))
        .stdout_has("destinations local: damaged (the stored archive has")
        .stdout_has("table entries   500 rows")
        .stderr_has(&format!("backup {full} on local is damaged"));
    let (code, v) = show_json(&env, &[&full]);
    assert_eq!(code, 4);
    assert_eq!(v["destinations"][0]["status"], "damaged");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v:#}");

    // The incremental on it: its own archive is whole, but its chain is not.
    let (code, v) = show_json(&env, &[&inc]);
    assert_eq!(code, 4, "{v:#}");
    assert_eq!(v["chain"], Value::Null);
    assert_eq!(v["parent"], full.as_str());
    assert_eq!(v["destinations"][0]["status"], "damaged");
    let problem = v["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("its chain is broken") && problem.contains(&full),
        "{problem}"
    );
    env.run(&["show", &inc])
        .code(4)
        .stdout_has("chain        BROKEN");

    // `latest` is only ever a good backup: here there is none, and what was passed over is
    // damage (exit 4).
    env.run(&["show", "latest"])
        .code(4)
        .stderr_has("no good backup");
    env.run(&["show", "20200101T000000Z-abcd"])
        .code(1)
        .stderr_has("no complete backup 20200101T000000Z-abcd");
}

#[test]
fn show_names_the_signer_the_untrusted_and_where_a_backup_is_missing() {
    let mut env = env_with_data();
    env.destinations.push(dest(
        "second",
        &format!("file://{}/second", env.root().display()),
    ));
    let unsigned = env.backup();
    let signing = env.path("signing.key");
    let public = env
        .run(&["key", "generate", signing.to_str().unwrap(), "--signing"])
        .ok()
        .stdout
        .trim()
        .to_string();
    env.extra = format!("[signing]\nkey_file = \"{}\"\n", signing.display());
    // Full: an incremental on the unsigned backup would be as untrusted as its chain.
    let r = env.run(&["--json", "backup", "--full"]);
    let signed = r.ok().json()["id"].as_str().unwrap().to_string();
    fs::remove_file(env.path(&format!("second/test-host/{signed}.json"))).unwrap();
    fs::remove_file(env.path(&format!("second/test-host/{signed}.json.sig"))).unwrap();

    // Without [trust]: signed or not, said, not judged.
    let (code, v) = show_json(&env, &[&signed]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["signature"]["status"], "not-checked");
    assert_eq!(v["signature"]["signed"], true);
    assert_eq!(v["destinations"][0]["status"], "ok");
    assert_eq!(v["destinations"][1]["destination"], "second");
    assert_eq!(v["destinations"][1]["status"], "incomplete");

    // With [trust]: the signer's fingerprint, and the unsigned one refused but shown.
    env.extra = format!(
        "[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{public}\"]\n",
        signing.display()
    );
    let (code, v) = show_json(&env, &["latest"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["id"], signed.as_str());
    assert_eq!(v["signature"]["status"], "trusted");
    assert!(
        v["signature"]["key"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:"),
        "{v:#}"
    );
    let r = env.run(&["show", &unsigned]);
    r.code(4)
        .stdout_has(&format!("backup {unsigned}  UNTRUSTED"))
        .stdout_has("signature    not signed, and [trust] requires a signature")
        .stderr_has("is not trusted");
    let (code, v) = show_json(&env, &["--dest", "second", &unsigned]);
    assert_eq!(code, 4);
    assert_eq!(v["signature"]["status"], "unsigned");
    assert_eq!(
        v["destinations"],
        serde_json::json!([{"destination": "second", "status": "untrusted", "detail": "it is not signed"}])
    );
}
