//! Incremental backups (issue 9): only the pages that changed, stored as a SQLite WAL file that
//! stock `sqlite3` applies; chains restored, verified and pruned link by link; a full backup
//! whenever a chain cannot be trusted (no page index, `--full`, `max_chain`, `full_every`, a
//! destination that missed the parent), and it says why.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;

use crate::harness::*;

const PAGE: usize = 4096;

// ---- helpers ----------------------------------------------------------------------------------

/// `backup --json` with `args`, which must succeed; its report.
fn backup_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json", "backup"];
    all.extend_from_slice(args);
    let r = env.run(&all);
    r.ok();
    r.json()
}

fn id_of(report: &Value) -> String {
    report["id"].as_str().unwrap().to_string()
}

fn assert_full(report: &Value, because: &[&str]) -> String {
    assert_eq!(report["kind"], "full", "{report:#}");
    assert!(
        report["parent"].is_null(),
        "a full backup has no parent: {report:#}"
    );
    let why = report["full_because"]
        .as_str()
        .unwrap_or_else(|| panic!("a full backup with [incremental] says why: {report:#}"));
    for needle in because {
        assert!(why.contains(needle), "full_because lacks {needle:?}: {why}");
    }
    id_of(report)
}

fn assert_incremental(report: &Value, parent: &str) -> String {
    assert_eq!(report["kind"], "incremental", "{report:#}");
    assert_eq!(report["parent"], parent, "{report:#}");
    assert!(
        report["full_because"].is_null(),
        "an incremental gives no reason to be full: {report:#}"
    );
    id_of(report)
}

fn sidecar_at(store: &Path, id: &str) -> Value {
    let path = store.join(format!("{id}.json"));
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn sidecar(env: &Env, id: &str) -> Value {
    sidecar_at(&env.store(), id)
}

fn archive_of(env: &Env, id: &str) -> PathBuf {
    env.store()
        .join(sidecar(env, id)["archive"]["object"].as_str().unwrap())
}

/// The manifest's entry for database `source`.
fn db_entry<'a>(manifest: &'a Value, source: &str) -> &'a Value {
    manifest["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source"] == source)
        .unwrap_or_else(|| panic!("no database {source} in {manifest:#}"))
}

/// Unpack backup `id` into `into` with the stock tools only (age, zstd/gzip, tar).
fn extract_with_tools(env: &Env, id: &str, into: &Path) {
    let sc = sidecar(env, id);
    let archive = archive_of(env, id);
    let read = if sc["archive"]["encryption"] == "age" {
        format!(
            "age -d -i '{}' '{}'",
            env.path("key.txt").display(),
            archive.display()
        )
    } else {
        format!("cat '{}'", archive.display())
    };
    let decompress = match sc["archive"]["compression"].as_str().unwrap() {
        "zstd" => "zstd -d",
        "gzip" => "gzip -d",
        _ => "cat",
    };
    fs::create_dir_all(into).unwrap();
    sh(&format!("{read} | {decompress} | tar -x"), into).ok();
}

fn restore(env: &Env, id: &str, out: &Path) {
    env.run(&["restore", id, "--to", out.to_str().unwrap()])
        .ok();
}

fn exec(db: &Path, sql: &str) {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{}: {sql}: {e}", db.display()));
}

/// Ledger transactions `from..=to` on `db`, in one transaction.
fn ledger_steps(db: &Path, from: i64, to: i64) {
    let conn = Connection::open(db).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for k in from..=to {
        ledger_step(&tx, k);
    }
    tx.commit().unwrap();
}

/// Every table's rows and the whole schema, as text: the database's logical content.
fn dump(db: &Path) -> Vec<String> {
    let conn = Connection::open(db).unwrap();
    let mut out = Vec::new();
    let schema: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (kind, name, sql) in &schema {
        out.push(format!("schema {kind} {name}: {sql:?}"));
    }
    for (kind, name, _) in &schema {
        if kind != "table" || name.starts_with("sqlite_") {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid"))
            .unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let values: Vec<rusqlite::types::Value> =
                (0..cols).map(|i| row.get(i).unwrap()).collect();
            out.push(format!("{name}: {values:?}"));
        }
    }
    out
}

/// A database as it was at one moment: its bytes (WAL checkpointed into the file) and rows.
#[derive(Clone)]
struct DbState {
    bytes: Vec<u8>,
    dump: Vec<String>,
}

impl DbState {
    fn blake3(&self) -> String {
        blake3::hash(&self.bytes).to_hex().to_string()
    }

    fn pages(&self) -> usize {
        self.bytes.len() / PAGE
    }
}

/// Checkpoint `db` (a no-op in rollback mode) so the file alone holds every committed page,
/// then read it. No other connection may be open.
fn capture(db: &Path) -> DbState {
    {
        let conn = Connection::open(db).unwrap();
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "{}: the checkpoint was blocked", db.display());
    }
    let bytes = fs::read(db).unwrap();
    assert_eq!(bytes.len() % PAGE, 0);
    DbState {
        dump: dump(db),
        bytes,
    }
}

/// A restored (or rebuilt) database equals `want`: byte for byte, then row for row.
fn assert_db_is(got: &Path, want: &DbState, what: &str) {
    let bytes = fs::read(got).unwrap_or_else(|e| panic!("{what}: {}: {e}", got.display()));
    assert_eq!(
        bytes.len(),
        want.bytes.len(),
        "{what}: {} has {} pages, the source had {}",
        got.display(),
        bytes.len() / PAGE,
        want.pages()
    );
    if bytes != want.bytes {
        let differing: Vec<usize> = (0..want.pages())
            .filter(|&p| bytes[p * PAGE..(p + 1) * PAGE] != want.bytes[p * PAGE..(p + 1) * PAGE])
            .map(|p| p + 1)
            .take(20)
            .collect();
        panic!(
            "{what}: {} differs from the source in pages {differing:?}",
            got.display()
        );
    }
    let rows = dump(got);
    if rows != want.dump {
        let first = rows
            .iter()
            .zip(&want.dump)
            .position(|(a, b)| a != b)
            .unwrap_or(rows.len().min(want.dump.len()));
        panic!(
            "{what}: rows differ at line {first}: got {:?}, want {:?}",
            rows.get(first),
            want.dump.get(first)
        );
    }
}

/// The 1-based numbers of pages of `now` that are not the same in `before`.
fn changed_pages(before: &DbState, now: &DbState) -> BTreeSet<u32> {
    (0..now.pages())
        .filter(|&p| {
            let page = &now.bytes[p * PAGE..(p + 1) * PAGE];
            before.bytes.get(p * PAGE..(p + 1) * PAGE) != Some(page)
        })
        .map(|p| p as u32 + 1)
        .collect()
}

/// One frame of a WAL file.
struct Frame {
    page: u32,
    /// The database size in pages after this commit; 0 for a frame that does not commit.
    commit: u32,
    data: Vec<u8>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn wal_checksum(big_endian: bool, data: &[u8], s: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = s;
    for pair in data.chunks(8) {
        let word = |w: &[u8]| {
            let w: [u8; 4] = w.try_into().unwrap();
            if big_endian {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            }
        };
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// Parse a WAL file as SQLite does, checking its header, salts and every checksum.
fn parse_wal(bytes: &[u8], what: &str) -> Vec<Frame> {
    assert!(bytes.len() >= 32, "{what}: shorter than a WAL header");
    let magic = be32(bytes, 0);
    assert!(
        magic == 0x377f0682 || magic == 0x377f0683,
        "{what}: not a WAL file (magic {magic:#x})"
    );
    let big = magic & 1 == 1;
    assert_eq!(be32(bytes, 4), 3007000, "{what}: WAL format version");
    let page_size = be32(bytes, 8) as usize;
    assert_eq!(page_size, PAGE, "{what}: WAL page size");
    let header_sum = wal_checksum(big, &bytes[..24], (0, 0));
    assert_eq!(
        header_sum,
        (be32(bytes, 24), be32(bytes, 28)),
        "{what}: WAL header checksum"
    );
    let frame_len = 24 + page_size;
    assert_eq!(
        (bytes.len() - 32) % frame_len,
        0,
        "{what}: a partial frame at the end"
    );
    let mut sum = header_sum;
    let mut frames = Vec::new();
    for (i, frame) in bytes[32..].chunks(frame_len).enumerate() {
        assert_eq!(
            frame[8..16],
            bytes[16..24],
            "{what}: frame {i} has other salts than the header (SQLite ignores it)"
        );
        sum = wal_checksum(big, &frame[..8], sum);
        sum = wal_checksum(big, &frame[24..], sum);
        assert_eq!(
            sum,
            (be32(frame, 16), be32(frame, 20)),
            "{what}: frame {i}'s checksum is wrong (SQLite stops reading there)"
        );
        frames.push(Frame {
            page: be32(frame, 0),
            commit: be32(frame, 4),
            data: frame[24..].to_vec(),
        });
    }
    frames
}

/// Check an incremental's stored WAL for `db` against the source before and after: exactly the
/// changed pages, ascending, each with the new content, the last one committing the new size.
fn check_wal(wal: &Path, before: &DbState, now: &DbState, entry: &Value, what: &str) {
    let bytes = fs::read(wal).unwrap_or_else(|e| panic!("{what}: {}: {e}", wal.display()));
    let frames = parse_wal(&bytes, what);
    assert_eq!(
        entry["stored"]["frames"].as_u64(),
        Some(frames.len() as u64),
        "{what}: the manifest's frame count"
    );
    assert!(
        !frames.is_empty(),
        "{what}: a changed database with no frames"
    );
    let pages: Vec<u32> = frames.iter().map(|f| f.page).collect();
    assert!(
        pages.windows(2).all(|w| w[0] < w[1]),
        "{what}: frames are not in ascending page order: {pages:?}"
    );
    let want = changed_pages(before, now);
    let got: BTreeSet<u32> = pages.iter().copied().collect();
    assert_eq!(
        got, want,
        "{what}: the frames are not exactly the pages that changed"
    );
    for f in &frames {
        let p = f.page as usize - 1;
        assert!(
            f.data == now.bytes[p * PAGE..(p + 1) * PAGE],
            "{what}: frame for page {} does not hold the page's new content",
            f.page
        );
    }
    let last = frames.last().unwrap();
    assert_eq!(
        last.commit as usize,
        now.pages(),
        "{what}: the commit frame must record the new page count"
    );
    assert_eq!(entry["page_count"].as_u64(), Some(now.pages() as u64));
    // Never the lock-byte page (offset 1 GiB).
    assert!(!got.contains(&((1u32 << 30) / PAGE as u32 + 1)));
}

fn list_item<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {list:#?}"))
}

fn listed_ids(env: &Env) -> Vec<String> {
    env.list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// The backup the page index in `state_dir` describes, read from its header (magic, u32 length,
/// JSON with `backup_id`); None when there is no index.
fn index_backup_id(env: &Env) -> Option<String> {
    let bytes = fs::read(env.state().join("pages.idx")).ok()?;
    assert_eq!(&bytes[..8], b"LVPAGES1", "pages.idx magic");
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[12..12 + len]).unwrap();
    Some(header["backup_id"].as_str().unwrap().to_string())
}

/// An environment with `[incremental]` (defaults) and one WAL ledger `a.db` of `rows` rows.
fn env_with_ledger(rows: i64) -> (Env, PathBuf) {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", rows);
    (env, db)
}

/// A full backup, then `n` incrementals, each after 10 more ledger transactions; the ids and the
/// ledger's n at each.
fn chain_of(env: &Env, db: &Path, start: i64, n: usize) -> (Vec<String>, Vec<i64>) {
    let mut ids = vec![id_of(&backup_json(env, &[]))];
    let mut counts = vec![start];
    let mut k = start;
    for _ in 0..n {
        ledger_steps(db, k + 1, k + 10);
        k += 10;
        let r = backup_json(env, &[]);
        ids.push(assert_incremental(&r, ids.last().unwrap()));
        counts.push(k);
    }
    (ids, counts)
}

// ---- 1. a chain across inserts, updates, deletes and a shrinking VACUUM -----------------------

#[test]
fn a_chain_restores_every_state_across_inserts_updates_deletes_and_a_shrinking_vacuum() {
    for tool in ["zstd", "tar"] {
        require_tool(tool);
    }
    let mut env = Env::new();
    env.incremental = Some("full_every = \"7d\"\nmax_chain = 30\n".into());
    let roll = env.add_sqlite("roll.db");
    create_ledger(&roll, "DELETE", 15_000);
    let wal = env.add_sqlite("wal.db");
    create_ledger(&wal, "WAL", 15_000);
    let still = env.add_sqlite("still.db");
    create_ledger(&still, "WAL", 300);
    let conf = env.add_source("app.conf", "file", "");
    fs::write(&conf, "v = 0\n").unwrap();
    let dbs = [("roll.db", &roll), ("wal.db", &wal), ("still.db", &still)];
    let snapshot = || -> Vec<DbState> { dbs.iter().map(|(_, p)| capture(p)).collect() };

    // The first backup with [incremental]: full, because there is nothing to compare with.
    let r = backup_json(&env, &[]);
    let full = assert_full(&r, &["page index"]);
    assert!(env.state().join("pages.idx").is_file());
    let mut ids = vec![full.clone()];
    let mut states = vec![snapshot()];
    let mut confs = vec!["v = 0\n".to_string()];

    // The three changes, each followed by an incremental.
    let changes: [&dyn Fn(); 3] = [
        // Inserts.
        &|| {
            ledger_steps(&roll, 15_001, 15_020);
            ledger_steps(&wal, 15_001, 15_020);
        },
        // Updates and deletes, and the config file changes.
        &|| {
            exec(
                &roll,
                "UPDATE entries SET body = body || ' updated' WHERE id % 7 = 0;
                 DELETE FROM entries WHERE id BETWEEN 2000 AND 9000;",
            );
            exec(
                &wal,
                "UPDATE accounts SET balance = balance + 5 WHERE id = 2;
                 DELETE FROM entries WHERE id % 3 = 0;",
            );
            fs::write(&conf, "v = 2\n").unwrap();
        },
        // A VACUUM that shrinks both databases.
        &|| {
            exec(&roll, "DELETE FROM entries WHERE id > 6000; VACUUM;");
            exec(&wal, "DELETE FROM entries WHERE id % 2 = 0; VACUUM;");
        },
    ];
    for change in &changes {
        change();
        let r = backup_json(&env, &[]);
        let id = assert_incremental(&r, ids.last().unwrap());
        ids.push(id);
        states.push(snapshot());
        confs.push(fs::read_to_string(&conf).unwrap());
    }
    let (before_vacuum, after_vacuum) = (&states[2], &states[3]);
    for i in 0..2 {
        assert!(
            after_vacuum[i].bytes.len() < before_vacuum[i].bytes.len() * 3 / 4,
            "{}: the VACUUM did not shrink the database ({} -> {} pages)",
            dbs[i].0,
            before_vacuum[i].pages(),
            after_vacuum[i].pages()
        );
    }

    // What each incremental stores: a WAL of exactly the changed pages per changed database,
    // nothing for the unchanged one, the file whole; manifest format 2 naming its chain.
    for k in 1..ids.len() {
        let id = &ids[k];
        let sc = sidecar(&env, id);
        let m = &sc["manifest"];
        assert_eq!(sc["format_version"], 2, "{id}");
        assert_eq!(m["format_version"], 2, "{id}");
        assert_eq!(m["kind"], "incremental");
        assert_eq!(m["parent"], ids[k - 1].as_str());
        assert_eq!(m["full"], full.as_str());
        let out = env.path(&format!("raw-{k}"));
        extract_with_tools(&env, id, &out);
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "BLAKE3SUMS",
                "app.conf",
                "manifest.json",
                "roll.db-wal",
                "wal.db-wal"
            ],
            "incremental {k} ({id}) holds other files than the two WALs, the file and its metadata"
        );
        let inner: Value =
            serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(&inner, m, "the archive's manifest is the sidecar's");
        assert_eq!(fs::read_to_string(out.join("app.conf")).unwrap(), confs[k]);
        for (i, (name, _)) in dbs.iter().enumerate() {
            let entry = db_entry(m, name);
            let (before, now) = (&states[k - 1][i], &states[k][i]);
            assert_eq!(
                entry["blake3"].as_str(),
                Some(now.blake3().as_str()),
                "{name} in {id}: the recorded BLAKE3 is not the database's after"
            );
            if *name == "still.db" {
                assert_eq!(entry["stored"]["as"], "unchanged", "{entry:#}");
                assert_eq!(
                    entry["stored"]["parent_blake3"].as_str(),
                    Some(before.blake3().as_str())
                );
                continue;
            }
            assert_eq!(entry["stored"]["as"], "wal", "{entry:#}");
            assert_eq!(entry["stored"]["wal"], format!("{name}-wal"));
            assert_eq!(
                entry["stored"]["parent_blake3"].as_str(),
                Some(before.blake3().as_str()),
                "{name} in {id}: parent_blake3 is not the parent's database"
            );
            check_wal(
                &out.join(format!("{name}-wal")),
                before,
                now,
                entry,
                &format!("{name} in incremental {k}"),
            );
        }
    }

    // The inserts touched a few pages: the incremental is a small fraction of the full.
    let full_bytes = sidecar(&env, &ids[0])["archive"]["bytes"].as_u64().unwrap();
    let inc_bytes = sidecar(&env, &ids[1])["archive"]["bytes"].as_u64().unwrap();
    assert!(
        inc_bytes * 8 < full_bytes,
        "the incremental after 20 inserts stores {inc_bytes} bytes, the full {full_bytes}"
    );

    // Every backup restores to the source as it was, byte for byte and row for row.
    for (k, id) in ids.iter().enumerate() {
        let out = env.path(&format!("restore-{k}"));
        restore(&env, id, &out);
        for (i, (name, _)) in dbs.iter().enumerate() {
            assert_db_is(
                &out.join(name),
                &states[k][i],
                &format!("{name} restored from backup {k} ({id})"),
            );
            for suffix in ["-wal", "-journal"] {
                assert!(
                    !out.join(format!("{name}{suffix}")).exists(),
                    "restore left {name}{suffix}"
                );
            }
        }
        assert_eq!(fs::read_to_string(out.join("app.conf")).unwrap(), confs[k]);
        env.run(&["verify", id]).ok();
    }
    env.run(&["verify", ids.last().unwrap(), "--restore-test"])
        .ok();

    // list: each backup's kind and parent.
    let list = env.list();
    assert_eq!(list.len(), 4);
    for (k, id) in ids.iter().enumerate() {
        let item = list_item(&list, id);
        assert!(item["damage"].is_null(), "{item:#}");
        if k == 0 {
            assert_eq!(item["kind"], "full", "{item:#}");
            assert!(item["parent"].is_null(), "{item:#}");
        } else {
            assert_eq!(item["kind"], "incremental", "{item:#}");
            assert_eq!(item["parent"], ids[k - 1].as_str(), "{item:#}");
        }
    }
    env.run(&["list"]).ok().stdout_has("incremental");
}

// ---- 2. stock tools rebuild the chain ---------------------------------------------------------

#[test]
fn stock_age_zstd_tar_and_sqlite3_rebuild_every_link_byte_identical_to_restore() {
    rebuild_with_stock_tools("zstd", true, "age -d -i {key} {archive} | zstd -d | tar -x");
}

#[test]
fn stock_gzip_tar_and_sqlite3_rebuild_every_link_byte_identical_to_restore() {
    rebuild_with_stock_tools("gzip", false, "gzip -dc {archive} | tar -x");
}

/// The README's recipe, with the real tools and Debian's sqlite3: extract the full backup, then
/// each incremental in order into the same folder, checkpointing each database that has a
/// `-wal` after each; after every link the folder equals `litevault restore` of that link.
fn rebuild_with_stock_tools(compression: &str, encrypted: bool, pipeline: &str) {
    for tool in ["age", "zstd", "gzip", "tar", "b3sum", "sqlite3"] {
        require_tool(tool);
    }
    let version = sh("sqlite3 --version", Path::new("/")).ok().stdout.clone();
    assert!(version.starts_with("3."), "{version}");
    let mut env = Env::new();
    env.incremental = Some(String::new());
    env.extra = format!("[compression]\nalgorithm = \"{compression}\"\n");
    if encrypted {
        env.with_age_key();
    }
    let ext = if encrypted { ".tar.zst.age" } else { ".tar.gz" };
    let roll = env.add_sqlite("roll.db");
    create_ledger(&roll, "DELETE", 8_000);
    let wal = env.add_sqlite("wal.db");
    create_ledger(&wal, "WAL", 8_000);
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("server.conf"), "listen = 1\n").unwrap();
    let dbs = [("roll.db", &roll), ("wal.db", &wal)];

    let changes: [&dyn Fn(); 4] = [
        &|| {},
        &|| {
            ledger_steps(&roll, 8_001, 8_050);
            ledger_steps(&wal, 8_001, 8_050);
        },
        &|| {
            exec(
                &roll,
                "UPDATE entries SET body = upper(body) WHERE id % 5 = 0;
                 DELETE FROM entries WHERE id < 3000;",
            );
            exec(&wal, "DELETE FROM entries WHERE id % 4 = 0;");
            fs::write(etc.join("server.conf"), "listen = 2\n").unwrap();
        },
        &|| {
            exec(&roll, "VACUUM;");
            exec(&wal, "DELETE FROM entries WHERE id > 2000; VACUUM;");
        },
    ];
    let by_hand = env.path("by-hand");
    let mut ids: Vec<String> = Vec::new();
    for (k, change) in changes.iter().enumerate() {
        change();
        let r = backup_json(&env, &[]);
        let id = if k == 0 {
            assert_full(&r, &[])
        } else {
            assert_incremental(&r, ids.last().unwrap())
        };
        ids.push(id.clone());
        let sources: Vec<DbState> = dbs.iter().map(|(_, p)| capture(p)).collect();
        let archive = archive_of(&env, &id);
        assert!(
            archive.to_string_lossy().ends_with(ext),
            "{}",
            archive.display()
        );

        // Extract the link into the same folder, check its sums, then checkpoint each
        // database that has a -wal.
        let script = pipeline
            .replace("{key}", &format!("'{}'", env.path("key.txt").display()))
            .replace("{archive}", &format!("'{}'", archive.display()));
        fs::create_dir_all(&by_hand).unwrap();
        sh(&script, &by_hand).ok();
        sh("b3sum --check BLAKE3SUMS", &by_hand).ok();
        for (name, _) in &dbs {
            if by_hand.join(format!("{name}-wal")).exists() {
                let r = sh(
                    &format!("sqlite3 '{name}' 'PRAGMA wal_checkpoint(TRUNCATE)'"),
                    &by_hand,
                );
                r.ok();
                assert!(
                    r.stdout.starts_with("0|"),
                    "sqlite3 could not checkpoint {name}: {}",
                    r.stdout
                );
            } else if k > 0 {
                panic!("incremental {k} changed {name} but holds no {name}-wal");
            }
        }

        let restored = env.path(&format!("litevault-{k}"));
        restore(&env, &id, &restored);
        for (i, (name, _)) in dbs.iter().enumerate() {
            sh(
                &format!(
                    "cmp '{}' '{}'",
                    by_hand.join(name).display(),
                    restored.join(name).display()
                ),
                Path::new("/"),
            )
            .ok();
            assert_db_is(
                &by_hand.join(name),
                &sources[i],
                &format!("{name} rebuilt by hand up to link {k}"),
            );
        }
        assert_eq!(
            fs::read(by_hand.join("etc/server.conf")).unwrap(),
            fs::read(restored.join("etc/server.conf")).unwrap()
        );
    }
}

// ---- 3. a damaged middle link -----------------------------------------------------------------

#[test]
fn a_damaged_middle_link_fails_verify_and_restore_naming_it_and_list_marks_the_newest() {
    let (env, db) = env_with_ledger(2_000);
    let (ids, counts) = chain_of(&env, &db, 2_000, 3);
    let (middle, newest) = (&ids[2], &ids[3]);
    let archive = archive_of(&env, middle);
    let original = fs::read(&archive).unwrap();

    // A flipped byte: same size, so only reading it finds it.
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    fs::write(&archive, &bytes).unwrap();
    env.run(&["verify", newest]).code(4).stderr_has(middle);
    env.run(&["verify", middle]).code(4).stderr_has(middle);
    let out = env.path("out");
    env.run(&["restore", newest, "--to", out.to_str().unwrap()])
        .code(4)
        .stderr_has(middle);
    assert!(!out.join("a.db").exists(), "a broken chain was restored");
    // The links below it are untouched.
    env.run(&["verify", &ids[1]]).ok();
    let below = env.path("below");
    restore(&env, &ids[1], &below);
    assert_eq!(check_ledger(&below.join("a.db")), counts[1]);

    // Cut short: the listing sees it, and the newest is damaged through it.
    fs::write(&archive, &original[..original.len() - 1]).unwrap();
    let list = env.list();
    let m = list_item(&list, middle);
    assert!(m["damage"].is_string(), "{m:#}");
    let n = list_item(&list, newest);
    let damage = n["damage"]
        .as_str()
        .unwrap_or_else(|| panic!("the newest is built on a damaged link: {n:#}"));
    assert!(damage.contains(middle.as_str()), "{damage}");
    for id in &ids[..2] {
        assert!(list_item(&list, id)["damage"].is_null());
    }
    env.run(&["verify", newest]).code(4).stderr_has(middle);
    env.run(&["restore", newest, "--to", out.to_str().unwrap()])
        .code(4)
        .stderr_has(middle);
    assert!(!out.join("a.db").exists());

    // Put back: the chain is whole again.
    fs::write(&archive, &original).unwrap();
    env.run(&["verify", newest]).ok();
    restore(&env, newest, &out);
    assert_eq!(check_ledger(&out.join("a.db")), counts[3]);
}

// ---- 4. a missing middle link -----------------------------------------------------------------

#[test]
fn a_missing_middle_link_fails_restore_naming_it_and_the_next_backup_is_full() {
    let (env, db) = env_with_ledger(2_000);
    let (ids, counts) = chain_of(&env, &db, 2_000, 3);
    let (middle, newest) = (&ids[2], &ids[3]);
    fs::remove_file(archive_of(&env, middle)).unwrap();
    fs::remove_file(env.store().join(format!("{middle}.json"))).unwrap();
    let _ = fs::remove_file(env.store().join(format!("{middle}.json.sig")));

    let out = env.path("out");
    env.run(&["restore", newest, "--to", out.to_str().unwrap()])
        .code(4)
        .stderr_has(middle);
    assert!(!out.join("a.db").exists());
    env.run(&["verify", newest]).code(4).stderr_has(middle);
    env.run(&["verify", newest, "--restore-test"])
        .code(4)
        .stderr_has(middle);

    let list = env.list();
    assert!(list.iter().all(|b| b["id"] != middle.as_str()));
    let n = list_item(&list, newest);
    let damage = n["damage"]
        .as_str()
        .unwrap_or_else(|| panic!("the newest's chain is incomplete: {n:#}"));
    assert!(damage.contains(middle.as_str()), "{damage}");
    assert!(list_item(&list, &ids[1])["damage"].is_null());
    env.run(&["verify", "--all"]).code(4).stderr_has(middle);
    // A backup that cannot be restored is never `latest`: the newest whole one is.
    let latest = env.path("latest");
    env.run(&["restore", "latest", "--to", latest.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&latest.join("a.db")), counts[1]);

    // The page index describes the newest, whose chain is broken: never build on it.
    ledger_steps(&db, 2_031, 2_040);
    let r = backup_json(&env, &[]);
    let id = assert_full(&r, &[]);
    restore(&env, &id, &env.path("after"));
    assert_eq!(check_ledger(&env.path("after/a.db")), 2_040);
}

// ---- 5. prune keeps chains --------------------------------------------------------------------

#[test]
fn prune_keep_last_1_keeps_the_whole_chain_of_the_newest() {
    let (mut env, db) = env_with_ledger(1_000);
    env.extra = "[retention]\nkeep_last = 1\n".into();
    // An older chain (full + 1), then a forced full with two incrementals.
    let (old, _) = chain_of(&env, &db, 1_000, 1);
    ledger_steps(&db, 1_011, 1_020);
    let r = backup_json(&env, &["--full"]);
    let mut ids = vec![assert_full(&r, &["--full"])];
    for k in 0..2 {
        ledger_steps(&db, 1_021 + k * 10, 1_030 + k * 10);
        let r = backup_json(&env, &[]);
        ids.push(assert_incremental(&r, ids.last().unwrap()));
    }
    assert_eq!(env.list().len(), 5);

    let r = env.run(&["prune", "--dry-run"]);
    r.ok().stdout_has("parent of").stdout_has("would delete");
    assert_eq!(env.list().len(), 5, "a dry run deleted something");
    let r = env.run(&["--json", "prune", "--dry-run"]);
    r.ok();
    let decisions = r.json()["destinations"][0]["decisions"].clone();
    for id in &ids[..2] {
        let d = decisions
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id.as_str())
            .unwrap();
        assert_eq!(d["keep"], true, "{d:#}");
        let reasons = d["reasons"].to_string();
        assert!(
            reasons.contains("parent of") || reasons.contains("chain of"),
            "kept for the chain above it, and says so: {d:#}"
        );
    }

    let r = env.run(&["--json", "prune"]);
    r.ok();
    let mut deleted: Vec<String> = r.json()["destinations"][0]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    let mut old = old;
    old.sort();
    assert_eq!(deleted, old, "only the older chain goes");
    let mut left = listed_ids(&env);
    left.sort();
    let mut ids_sorted = ids.clone();
    ids_sorted.sort();
    assert_eq!(left, ids_sorted);
    for b in env.list() {
        assert!(b["damage"].is_null(), "{b:#}");
    }
    let out = env.path("out");
    restore(&env, &ids[2], &out);
    assert_eq!(check_ledger(&out.join("a.db")), 1_040);
    env.run(&["verify", "--all"]).ok();
}

#[test]
fn prune_never_deletes_the_incrementals_of_a_lost_full_backup_silently() {
    let (mut env, db) = env_with_ledger(1_000);
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let (ids, _) = chain_of(&env, &db, 1_000, 2);
    let full = &ids[0];
    fs::remove_file(archive_of(&env, full)).unwrap();
    fs::remove_file(env.store().join(format!("{full}.json"))).unwrap();
    let _ = fs::remove_file(env.store().join(format!("{full}.json.sig")));
    ledger_steps(&db, 1_021, 1_030);
    let fresh = assert_full(&backup_json(&env, &[]), &[]);

    let r = env.run(&["--json", "prune"]);
    let doc = r.json();
    let warnings = doc["warnings"].to_string();
    // Kept or deleted, each is reported.
    for id in &ids[1..] {
        assert!(
            warnings.contains(id.as_str()) || r.stderr.contains(id.as_str()),
            "prune does not report {id}, whose full backup is gone: {doc:#}\n{}",
            r.stderr
        );
    }
    let left = listed_ids(&env);
    assert!(left.contains(&fresh));
    let out = env.path("out");
    restore(&env, &fresh, &out);
    assert_eq!(check_ledger(&out.join("a.db")), 1_030);
}

// ---- 6. a lost page index ---------------------------------------------------------------------

#[test]
fn a_lost_or_damaged_page_index_makes_a_full_backup_and_says_so() {
    let (env, db) = env_with_ledger(2_000);
    let full = assert_full(&backup_json(&env, &[]), &["page index"]);
    ledger_steps(&db, 2_001, 2_010);
    let inc = assert_incremental(&backup_json(&env, &[]), &full);
    let idx = env.state().join("pages.idx");
    assert!(idx.is_file());

    fs::remove_file(&idx).unwrap();
    ledger_steps(&db, 2_011, 2_020);
    let second = assert_full(&backup_json(&env, &[]), &["page index"]);
    assert!(idx.is_file(), "the full backup writes a new index");
    ledger_steps(&db, 2_021, 2_030);
    let next = assert_incremental(&backup_json(&env, &[]), &second);

    // Cut short on disk: not used, and said so.
    let bytes = fs::read(&idx).unwrap();
    fs::write(&idx, &bytes[..bytes.len() / 2]).unwrap();
    ledger_steps(&db, 2_031, 2_040);
    let third = assert_full(&backup_json(&env, &[]), &["page index"]);

    for (id, n) in [
        (&inc, 2_010),
        (&second, 2_020),
        (&next, 2_030),
        (&third, 2_040),
    ] {
        let out = env.path(&format!("out-{id}"));
        restore(&env, id, &out);
        assert_eq!(check_ledger(&out.join("a.db")), n);
    }
}

// ---- 7. --full, max_chain, full_every, and no [incremental] -----------------------------------

#[test]
fn without_the_incremental_table_every_backup_is_full_and_gives_no_reason() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 500);
    for k in 0..2 {
        ledger_steps(&db, 501 + k * 10, 510 + k * 10);
        let r = backup_json(&env, &[]);
        assert_eq!(r["kind"], "full", "{r:#}");
        assert!(
            r["parent"].is_null() && r["full_because"].is_null(),
            "{r:#}"
        );
        let sc = sidecar(&env, &id_of(&r));
        assert_eq!(sc["manifest"]["kind"], "full");
        assert!(sc["manifest"]["parent"].is_null());
    }
}

#[test]
fn full_forces_a_full_backup_and_max_chain_bounds_the_chain() {
    let (mut env, db) = env_with_ledger(500);
    env.incremental = Some("max_chain = 2\n".into());
    let mut k = 500;
    let mut step = |env: &Env, args: &[&str]| {
        ledger_steps(&db, k + 1, k + 5);
        k += 5;
        (backup_json(env, args), k)
    };
    let mut expect = Vec::new();
    let (r, n) = step(&env, &[]);
    let b0 = assert_full(&r, &[]);
    expect.push((b0.clone(), n));
    let (r, n) = step(&env, &[]);
    let b1 = assert_incremental(&r, &b0);
    expect.push((b1, n));
    let (r, n) = step(&env, &["--full"]);
    let b2 = assert_full(&r, &["--full"]);
    expect.push((b2.clone(), n));
    let (r, n) = step(&env, &[]);
    let b3 = assert_incremental(&r, &b2);
    expect.push((b3.clone(), n));
    let (r, n) = step(&env, &[]);
    let b4 = assert_incremental(&r, &b3);
    expect.push((b4, n));
    let (r, n) = step(&env, &[]);
    let b5 = assert_full(&r, &["max_chain"]);
    expect.push((b5.clone(), n));
    let (r, n) = step(&env, &[]);
    let b6 = assert_incremental(&r, &b5);
    expect.push((b6, n));

    for (id, n) in &expect {
        let out = env.path(&format!("out-{id}"));
        restore(&env, id, &out);
        assert_eq!(check_ledger(&out.join("a.db")), *n, "{id}");
    }
    env.run(&["verify", "--all"]).ok();
}

#[test]
fn full_every_starts_a_new_chain_once_the_full_backup_is_that_old() {
    let (mut env, db) = env_with_ledger(500);
    env.incremental = Some("full_every = \"5s\"\n".into());
    let b0 = assert_full(&backup_json(&env, &[]), &[]);
    ledger_steps(&db, 501, 505);
    let b1 = assert_incremental(&backup_json(&env, &[]), &b0);
    std::thread::sleep(Duration::from_millis(5_500));
    ledger_steps(&db, 506, 510);
    let b2 = assert_full(&backup_json(&env, &[]), &["full_every"]);
    ledger_steps(&db, 511, 515);
    assert_incremental(&backup_json(&env, &[]), &b2);
    let out = env.path("out");
    restore(&env, &b1, &out);
    assert_eq!(check_ledger(&out.join("a.db")), 505);
}

// ---- 8. one destination down for the parent's run ---------------------------------------------

#[test]
fn a_destination_that_missed_the_parent_makes_the_next_backup_full_for_everyone() {
    let (mut env, db) = env_with_ledger(1_000);
    env.destinations
        .push(dest("offsite", "file://__ROOT__/offsite"));
    let offsite = env.path("offsite");
    let offsite_store = offsite.join("test-host");

    // Run 1: full on both.
    let r = backup_json(&env, &[]);
    let id1 = assert_full(&r, &[]);
    assert!(r["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["ok"] == true));

    // Run 2: offsite is down (its folder is a regular file); an incremental goes to local.
    fs::rename(&offsite, env.path("offsite.away")).unwrap();
    fs::write(&offsite, "not a folder").unwrap();
    ledger_steps(&db, 1_001, 1_010);
    let r = env.run(&["--json", "backup"]);
    r.code(3);
    let doc = r.json();
    let id2 = assert_incremental(&doc, &id1);
    let dests = doc["destinations"].as_array().unwrap();
    let ok = |name: &str| dests.iter().find(|d| d["name"] == name).unwrap()["ok"].clone();
    assert_eq!(ok("local"), true, "{doc:#}");
    assert_eq!(ok("offsite"), false, "{doc:#}");

    // Run 3: offsite is back but misses the parent: a full backup for everyone, saying why.
    fs::remove_file(&offsite).unwrap();
    fs::rename(env.path("offsite.away"), &offsite).unwrap();
    ledger_steps(&db, 1_011, 1_020);
    let r = backup_json(&env, &[]);
    let id3 = assert_full(&r, &["not on destination", "offsite"]);
    assert!(r["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["ok"] == true));

    // Run 4: both hold the new full: incremental on both.
    ledger_steps(&db, 1_021, 1_030);
    let r = backup_json(&env, &[]);
    let id4 = assert_incremental(&r, &id3);
    assert_eq!(env.count_on("local"), 4);
    assert_eq!(env.count_on("offsite"), 3);
    assert!(!offsite_store.join(format!("{id2}.json")).exists());
    for b in env.list() {
        assert!(b["damage"].is_null(), "{b:#}");
    }

    for (id, n, dests) in [
        (&id1, 1_000, vec!["local", "offsite"]),
        (&id2, 1_010, vec!["local"]),
        (&id3, 1_020, vec!["local", "offsite"]),
        (&id4, 1_030, vec!["local", "offsite"]),
    ] {
        for d in dests {
            let out = env.path(&format!("out-{id}-{d}"));
            env.run(&["restore", id, "--to", out.to_str().unwrap(), "--dest", d])
                .ok();
            assert_eq!(check_ledger(&out.join("a.db")), n, "{id} from {d}");
        }
    }
    env.run(&["verify", "--all"]).ok();
}

// ---- 9. kill -9 during an incremental ---------------------------------------------------------

#[test]
fn kill_9_during_an_incremental_leaves_nothing_partial_and_the_next_run_is_correct() {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    let bulk = env.add_sqlite("bulk.db");
    create_bulk(&bulk, 16);
    let ledger = env.add_sqlite("ledger.db");
    create_ledger(&ledger, "WAL", 500);
    // Every page of the bulk database changes: an incremental as long as a full backup.
    let rewrite = || exec(&bulk, "UPDATE blobs SET data = randomblob(65536);");

    assert_full(&backup_json(&env, &[]), &[]);
    rewrite();
    let t = Instant::now();
    let first = env.list()[0]["id"].as_str().unwrap().to_string();
    assert_incremental(&backup_json(&env, &[]), &first);
    let inc = t.elapsed();

    let mut killed_mid_way = 0;
    let mut n = 500;
    for i in 1..=8u32 {
        rewrite();
        ledger_steps(&ledger, n + 1, n + 3);
        n += 3;
        let child = env.spawn(&["backup"]);
        if kill_after(child, inc.mul_f64(f64::from(i) / 9.0)) {
            killed_mid_way += 1;
        }
        let list = env.list();
        for b in &list {
            assert!(b["damage"].is_null(), "a listed backup is damaged: {b}");
        }
        // The page index never runs ahead of what is stored.
        let described = index_backup_id(&env).expect("the page index is kept");
        assert!(
            list.iter().any(|b| b["id"] == described.as_str()),
            "the page index describes {described}, which is not stored"
        );
    }
    assert!(
        killed_mid_way >= 4,
        "only {killed_mid_way} kills landed mid-backup; the test proves nothing"
    );

    // The next run succeeds, on the newest complete backup (or as a full one), and restores.
    let newest = env.list()[0]["id"].as_str().unwrap().to_string();
    rewrite();
    ledger_steps(&ledger, n + 1, n + 3);
    n += 3;
    let r = backup_json(&env, &[]);
    let id = if r["kind"] == "incremental" {
        assert_incremental(&r, &newest)
    } else {
        assert_full(&r, &[])
    };
    let want = capture(&bulk);
    let out = env.path("out");
    restore(&env, &id, &out);
    assert_db_is(&out.join("bulk.db"), &want, "bulk.db after the kills");
    assert_eq!(check_ledger(&out.join("ledger.db")), n);

    let stored = env.stored_files();
    assert!(
        stored.iter().all(|f| !f.starts_with("tmp/")),
        "leftovers: {stored:?}"
    );
    let archives = stored.iter().filter(|f| f.contains(".tar")).count();
    let sidecars = stored.iter().filter(|f| f.ends_with(".json")).count();
    assert_eq!(
        archives, sidecars,
        "an archive without a sidecar: {stored:?}"
    );
    assert_eq!(sidecars, env.list().len());
    env.run(&["verify", "--all"]).ok();
}

// ---- 10. a live writer during incrementals ----------------------------------------------------

#[test]
fn incrementals_under_live_writers_restore_to_one_instant_of_each_database() {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    let wal = env.add_sqlite("wal.db");
    create_ledger(&wal, "WAL", 20_000);
    let roll = env.add_sqlite("roll.db");
    create_ledger(&roll, "DELETE", 20_000);

    let writers = [Writer::start(&wal), Writer::start(&roll)];
    let mut ids: Vec<String> = Vec::new();
    for k in 0..4 {
        let r = backup_json(&env, &[]);
        ids.push(if k == 0 {
            assert_full(&r, &[])
        } else {
            assert_incremental(&r, ids.last().unwrap())
        });
    }
    let [w, r] = writers;
    let committed = [w.stop(), r.stop()];
    for c in committed {
        assert!(c > 20_000, "a writer made no progress during the backups");
    }

    let mut last = [20_000, 20_000];
    for id in &ids {
        let out = env.path(&format!("restore-{id}"));
        restore(&env, id, &out);
        for (i, name) in ["wal.db", "roll.db"].iter().enumerate() {
            let n = check_ledger(&out.join(name));
            assert!(
                (last[i]..=committed[i]).contains(&n),
                "{name} from {id}: state {n} was never committed after the previous backup's {}",
                last[i]
            );
            last[i] = n;
        }
    }
    env.run(&["verify", ids.last().unwrap(), "--restore-test"])
        .ok();

    // With the writers stopped, one more incremental equals the sources byte for byte: the page
    // index followed exactly what each snapshot stored.
    let r = backup_json(&env, &[]);
    let id = assert_incremental(&r, ids.last().unwrap());
    let out = env.path("quiet");
    restore(&env, &id, &out);
    assert_db_is(&out.join("wal.db"), &capture(&wal), "wal.db, quiet");
    assert_db_is(&out.join("roll.db"), &capture(&roll), "roll.db, quiet");
}

// ---- more edges -------------------------------------------------------------------------------

#[test]
fn a_database_added_to_the_config_is_stored_whole_and_a_removed_one_is_gone() {
    let (mut env, a) = env_with_ledger(1_000);
    let full = assert_full(&backup_json(&env, &[]), &[]);
    let b = env.add_sqlite("b.db");
    create_ledger(&b, "DELETE", 700);
    ledger_steps(&a, 1_001, 1_010);
    let inc = assert_incremental(&backup_json(&env, &[]), &full);
    let m = sidecar(&env, &inc)["manifest"].clone();
    assert_eq!(db_entry(&m, "b.db")["stored"]["as"], "whole", "{m:#}");
    assert_eq!(db_entry(&m, "a.db")["stored"]["as"], "wal", "{m:#}");
    let want_b = capture(&b);
    let out = env.path("out");
    restore(&env, &inc, &out);
    assert_eq!(check_ledger(&out.join("a.db")), 1_010);
    assert_db_is(&out.join("b.db"), &want_b, "b.db, new since the parent");

    // a.db leaves the config: the next backup holds b.db only.
    env.sources.retain(|s| !s.contains("\"a.db\""));
    ledger_steps(&b, 701, 710);
    let r = backup_json(&env, &[]);
    let id = id_of(&r);
    let out = env.path("out2");
    restore(&env, &id, &out);
    assert_eq!(check_ledger(&out.join("b.db")), 710);
    assert!(!out.join("a.db").exists(), "a source no longer configured");
    env.run(&["verify", "--all"]).ok();
}

#[test]
fn a_page_size_change_makes_a_full_backup_and_says_so() {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "DELETE", 1_000);
    let full = assert_full(&backup_json(&env, &[]), &[]);
    ledger_steps(&db, 1_001, 1_010);
    assert_incremental(&backup_json(&env, &[]), &full);
    exec(&db, "PRAGMA page_size = 8192; VACUUM;");
    let page_size: i64 = Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, 8192);
    let second = assert_full(&backup_json(&env, &[]), &["page size"]);
    ledger_steps(&db, 1_011, 1_020);
    let inc = assert_incremental(&backup_json(&env, &[]), &second);
    let out = env.path("out");
    restore(&env, &inc, &out);
    assert_eq!(check_ledger(&out.join("a.db")), 1_020);
    let restored: i64 = Connection::open(out.join("a.db"))
        .unwrap()
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(restored, 8192);
}

#[test]
fn a_host_with_only_the_public_recipient_takes_incrementals() {
    let (mut env, db) = env_with_ledger(1_000);
    let key = env.with_age_key();
    let with_identity = env.encryption.clone();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\n",
        public_key(&key)
    ));
    // The identity is not even readable: nothing may decrypt a parent.
    let hidden = env.path("key.hidden");
    fs::rename(&key, &hidden).unwrap();
    let (ids, counts) = chain_of(&env, &db, 1_000, 2);
    fs::rename(&hidden, &key).unwrap();
    env.encryption = with_identity;
    let out = env.path("out");
    restore(&env, &ids[2], &out);
    assert_eq!(check_ledger(&out.join("a.db")), counts[2]);
    env.run(&["verify", "--all"]).ok();
}

#[test]
fn a_child_whose_id_sorts_before_its_parents_within_one_second_still_chains() {
    // Ids have one-second resolution and a random suffix, so a quick child's id can sort before
    // its parent's. Order is by creation time, never by id.
    let (env, db) = env_with_ledger(50);
    let mut prev = id_of(&backup_json(&env, &[]));
    let mut k = 50;
    let mut inverted = None;
    for _ in 0..40 {
        k += 1;
        ledger_steps(&db, k, k);
        let id = assert_incremental(&backup_json(&env, &[]), &prev);
        if id < prev {
            inverted = Some(id.clone());
            break;
        }
        prev = id;
    }
    let child =
        inverted.expect("no child's id sorted before its parent's in 40 tries; proves nothing");
    let list = env.list();
    assert_eq!(list[0]["id"], child.as_str(), "newest first, by time");
    for b in &list {
        assert!(b["damage"].is_null(), "{b:#}");
    }
    let out = env.path("latest");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("a.db")), k);
    env.run(&["verify", &child]).ok();
    k += 1;
    ledger_steps(&db, k, k);
    let next = assert_incremental(&backup_json(&env, &[]), &child);
    let out = env.path("next");
    restore(&env, &next, &out);
    assert_eq!(check_ledger(&out.join("a.db")), k);
}

#[test]
fn in_place_restore_of_an_incremental_and_its_safety_backup_keep_the_chain_right() {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    let auth = env.add_sqlite("auth.db");
    create_ledger(&auth, "WAL", 1_000);
    let acct = env.add_sqlite("accounting.db");
    create_ledger(&acct, "DELETE", 1_000);
    let both = |from: i64, to: i64| {
        ledger_steps(&auth, from, to);
        ledger_steps(&acct, from, to);
    };
    let b0 = assert_full(&backup_json(&env, &[]), &[]);
    both(1_001, 1_010);
    let b1 = assert_incremental(&backup_json(&env, &[]), &b0);
    both(1_011, 1_020);
    assert_incremental(&backup_json(&env, &[]), &b1);
    both(1_021, 1_030);
    let live = [capture(&auth), capture(&acct)];

    let r = env.run(&["--json", "restore", &b1, "--in-place"]);
    r.ok();
    let safety = r.json()["safety_backup"].as_str().unwrap().to_string();
    assert_eq!(check_ledger(&auth), 1_010);
    assert_eq!(check_ledger(&acct), 1_010);

    // The next backup sees the restored state, whatever it builds on.
    let r = backup_json(&env, &[]);
    let after = id_of(&r);
    let out = env.path("after");
    restore(&env, &after, &out);
    assert_db_is(&out.join("auth.db"), &capture(&auth), "auth.db after");
    assert_db_is(
        &out.join("accounting.db"),
        &capture(&acct),
        "accounting.db after",
    );

    // Undo with the safety backup: the state before the restore, byte for byte.
    env.run(&["restore", &safety, "--in-place", "--no-safety-backup"])
        .ok();
    assert_db_is(&auth, &live[0], "auth.db undone");
    assert_db_is(&acct, &live[1], "accounting.db undone");
    let r = backup_json(&env, &[]);
    let out = env.path("undone");
    restore(&env, &id_of(&r), &out);
    assert_db_is(&out.join("auth.db"), &live[0], "auth.db after the undo");
    assert_db_is(
        &out.join("accounting.db"),
        &live[1],
        "accounting.db after the undo",
    );
    env.run(&["verify", "--all"]).ok();
}
