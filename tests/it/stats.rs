//! `litevault stats`: per destination, the good backups (full and incremental), their bytes,
//! the oldest and the newest; a damaged backup is reported and not counted, and a destination
//! that cannot be listed makes the run exit 1 after the rest is shown.

use std::fs;

use serde_json::Value;

use crate::harness::*;

/// Two chains on two destinations, `local` and `other`: full A, incremental B on A, full C,
/// incremental D on C; each in a second of its own, so oldest and newest are unambiguous.
fn two_chains() -> (Env, [String; 4]) {
    let mut env = Env::new();
    env.incremental = Some(String::new());
    fs::create_dir_all(env.path("other")).unwrap();
    env.destinations
        .push(dest("other", &format!("file://{}/other", "__ROOT__")));
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    let mut ids = Vec::new();
    for full in [false, false, true, false] {
        if !ids.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let args: &[&str] = if full {
            &["--json", "backup", "--full"]
        } else {
            &["--json", "backup"]
        };
        let r = env.run(args);
        r.ok();
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let kinds: Vec<(String, String)> = env
        .list()
        .iter()
        .filter(|b| b["destination"] == "local")
        .map(|b| {
            (
                b["id"].as_str().unwrap().into(),
                b["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (id, kind) in ids
        .iter()
        .zip(["full", "incremental", "full", "incremental"])
    {
        assert!(
            kinds.contains(&(id.clone(), kind.into())),
            "{id} {kind}: {kinds:?}"
        );
    }
    (env, ids.try_into().unwrap())
}

fn stored_bytes(env: &Env, dest: &str, ids: &[&String]) -> u64 {
    env.list()
        .iter()
        .filter(|b| b["destination"] == dest && ids.iter().any(|id| b["id"] == id.as_str()))
        .map(|b| b["bytes"].as_u64().unwrap())
        .sum()
}

/// The words of the text row for destination `name`.
fn row(stdout: &str, name: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn on<'a>(v: &'a Value, dest: &str) -> &'a Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == dest)
        .unwrap_or_else(|| panic!("no {dest} in {v:#}"))
}

#[test]
fn stats_counts_good_backups_and_reports_a_damaged_one_without_counting_it() {
    let (env, [a, b, c, d]) = two_chains();

    // Everything good: four backups on each destination, two chains.
    let r = env.run(&["--json", "stats"]);
    let v = r.ok().json();
    for name in ["local", "other"] {
        let s = on(&v, name);
        assert_eq!(s["backups"], 4, "{s:#}");
        assert_eq!(s["full"], 2, "{s:#}");
        assert_eq!(s["incremental"], 2, "{s:#}");
        assert_eq!(s["oldest"]["id"], a.as_str(), "{s:#}");
        assert_eq!(s["newest"]["id"], d.as_str(), "{s:#}");
        assert_eq!(s["not_counted"], Value::Array(vec![]), "{s:#}");
        assert_eq!(s["bytes"], stored_bytes(&env, name, &[&a, &b, &c, &d]));
    }

    // B's archive cut short on `local` only: damaged there, nothing builds on it (D builds on C).
    let archive = fs::read_dir(env.store())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(b.as_str()) && n.contains(".tar")
        })
        .unwrap();
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();

    let r = env.run(&["--json", "stats"]);
    let v = r.ok().json();
    let local = on(&v, "local");
    assert_eq!(local["backups"], 3, "{local:#}");
    assert_eq!(local["full"], 2, "{local:#}");
    assert_eq!(local["incremental"], 1, "{local:#}");
    assert_eq!(local["bytes"], stored_bytes(&env, "local", &[&a, &c, &d]));
    let not_counted = local["not_counted"].as_array().unwrap();
    assert_eq!(not_counted.len(), 1, "{local:#}");
    assert_eq!(not_counted[0]["id"], b.as_str());
    assert_eq!(not_counted[0]["standing"], "damaged");
    assert!(
        not_counted[0]["why"].as_str().unwrap().contains("damaged"),
        "{local:#}"
    );
    // The other destination's copy is whole, and counted.
    assert_eq!(on(&v, "other")["backups"], 4);

    // As text: a row per destination, the damaged backup named on stderr.
    let r = env.run(&["stats"]);
    r.ok()
        .stderr_has(&format!("backup {b} on local is not counted"))
        .stderr_has("damaged");
    let header = r.stdout.lines().next().unwrap();
    for column in [
        "DESTINATION",
        "BACKUPS",
        "FULL",
        "INCREMENTAL",
        "STORED",
        "OLDEST",
        "NEWEST",
    ] {
        assert!(header.contains(column), "{}", r.stdout);
    }
    let local = row(&r.stdout, "local");
    assert_eq!(&local[1..4], ["3", "2", "1"], "{}", r.stdout);
    assert!(local.contains(&a) && local.contains(&d), "{}", r.stdout);
    assert!(r.stdout.contains("(1 not counted)"), "{}", r.stdout);
    assert_eq!(
        &row(&r.stdout, "other")[1..4],
        ["4", "2", "2"],
        "{}",
        r.stdout
    );

    // A destination that cannot be listed: said, shown as such, exit 1; the rest still shown.
    fs::remove_dir_all(env.path("other")).unwrap();
    let r = env.run(&["stats"]);
    r.code(1).stderr_has("destination other");
    assert!(row(&r.stdout, "local").contains(&d), "{}", r.stdout);
    let r = env.run(&["--json", "stats"]);
    r.code(1);
    assert!(on(&r.json(), "other")["error"].is_string());
    // Asked about the one that can be listed, all is well.
    env.run(&["stats", "--dest", "local"]).ok();
}
