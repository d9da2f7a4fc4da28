//! Knowing that backups went missing: each signed sidecar numbers its backup on the destination
//! and names the one before it; `state_dir` remembers the highest number seen. A deleted newest
//! backup (a rollback) and a backup deleted out of turn are warnings on `list`, `backup` and
//! `show`, an integrity finding for `verify --all`, and metrics; a prune by the policy is not.

use std::fs;
use std::path::Path;

use crate::harness::*;

/// An environment that signs its backups and trusts only its own key.
fn signed_env() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 50);
    let signing = env.path("signing.key");
    let r = env.run(&["key", "generate", signing.to_str().unwrap(), "--signing"]);
    r.ok();
    let public = r.stdout.trim().to_string();
    env.extra = format!(
        "[encryption]\nnone = true\n[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{public}\"]\n",
        signing.display()
    );
    env
}

/// Delete every object of backup `id` from the local destination, as an attacker would.
fn delete_backup(env: &Env, id: &str) {
    let mut gone = 0;
    for entry in fs::read_dir(env.store()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(id) {
            fs::remove_file(entry.path()).unwrap();
            gone += 1;
        }
    }
    assert!(gone >= 2, "backup {id} was not found to delete");
}

fn sequences(env: &Env) -> Vec<(String, u64)> {
    env.list()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["sequence"].as_u64().expect("every backup is numbered"),
            )
        })
        .collect()
}

fn sidecar(env: &Env, id: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap()
}

fn b3sum(path: &Path) -> String {
    let out = std::process::Command::new(require_tool("b3sum"))
        .arg("--no-names")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn each_backup_is_numbered_and_names_the_signed_sidecar_before_it() {
    let env = signed_env();
    let ids: Vec<String> = (0..3).map(|_| env.backup()).collect();
    let mut listed = sequences(&env);
    listed.sort_by_key(|(_, n)| *n);
    assert_eq!(
        listed,
        ids.iter().cloned().zip(1..).collect::<Vec<(String, u64)>>()
    );
    assert!(sidecar(&env, &ids[0])["sequence"]["previous"].is_null());
    for pair in ids.windows(2) {
        let previous = &sidecar(&env, &pair[1])["sequence"]["previous"];
        assert_eq!(previous["id"], pair[0].as_str());
        // The stock b3sum of the stored sidecar is what the next one names.
        let stored = env.store().join(format!("{}.json", pair[0]));
        assert_eq!(previous["sidecar_blake3"], b3sum(&stored).as_str());
    }
    let shown = env.run(&["show", &ids[2]]);
    shown
        .ok()
        .stdout_has(&format!("#3 on local, after {}", ids[1]));
    // Nothing missing: no warning anywhere.
    let r = env.run(&["list"]);
    r.ok();
    assert!(!r.stderr.contains("missing"), "{}", r.stderr);
}

#[test]
fn a_deleted_newest_backup_is_a_rollback_on_every_command_and_in_the_metrics() {
    let mut env = signed_env();
    let metrics = env.path("litevault.prom");
    env.extra
        .insert_str(0, &format!("metrics_file = \"{}\"\n", metrics.display()));
    let ids: Vec<String> = (0..3).map(|_| env.backup()).collect();
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("litevault_backup_sequence{host=\"test-host\",destination=\"local\"} 3"),
        "{prom}"
    );
    assert!(
        prom.contains("litevault_backups_missing{host=\"test-host\",destination=\"local\"} 0"),
        "{prom}"
    );

    delete_backup(&env, &ids[2]);
    let r = env.run(&["list"]);
    r.ok()
        .stderr_has("the newest backups were deleted or rolled back")
        .stderr_has(&format!("#3 {} (last seen ", ids[2]));
    env.run(&["show", "latest"])
        .ok()
        .stderr_has("the newest backup there is #2, but #3 was seen before");
    let verify = env.run(&["verify", "--all"]);
    verify.code(4).stderr_has("rolled back");
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("litevault_backup_sequence{host=\"test-host\",destination=\"local\"} 2"),
        "{prom}"
    );
    assert!(
        prom.contains("litevault_backups_missing{host=\"test-host\",destination=\"local\"} 1"),
        "{prom}"
    );

    // The next backup says so too, and never reuses the number: it is #4.
    let r = env.run(&["--json", "backup"]);
    r.ok().stderr_has("rolled back");
    let next: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let next = next["id"].as_str().unwrap();
    assert_eq!(sidecar(&env, next)["sequence"]["number"], 4);
    assert_eq!(
        sidecar(&env, next)["sequence"]["previous"]["id"],
        ids[1].as_str()
    );
    // #3 is now a gap that no policy explains (there is none): still a finding.
    env.run(&["list"])
        .ok()
        .stderr_has("deleted out of turn")
        .stderr_has(&format!("#3 {}", ids[2]));
}

#[test]
fn a_backup_deleted_out_of_turn_is_found_even_by_a_host_that_never_saw_it() {
    let mut env = signed_env();
    env.extra.push_str("[retention]\nkeep_last = 10\n");
    let ids: Vec<String> = (0..4).map(|_| env.backup()).collect();
    delete_backup(&env, &ids[1]);
    env.run(&["list"])
        .ok()
        .stderr_has("deleted out of turn")
        .stderr_has(&format!("#2 {} (last seen ", ids[1]));
    env.run(&["verify", "--all"])
        .code(4)
        .stderr_has("deleted out of turn");

    // Another host reading the same destination, with no memory of it: the signed sidecar of
    // #3 names #2, and the policy would keep it.
    let mut reader = signed_env();
    reader.extra = env.extra.clone();
    reader.destinations = vec![dest(
        "local",
        &format!("file://{}", env.path("backups").display()),
    )];
    reader
        .run(&["list"])
        .ok()
        .stderr_has("deleted out of turn")
        .stderr_has(&format!("#2 {} (never seen by this host)", ids[1]));
}

#[test]
fn a_prune_by_the_policy_raises_no_finding_here_or_on_a_fresh_host() {
    let mut env = signed_env();
    env.extra.push_str("[retention]\nkeep_last = 2\n");
    let ids: Vec<String> = (0..5).map(|_| env.backup()).collect();
    env.run(&["list"]).ok();
    env.run(&["prune"]).ok();
    let left: Vec<u64> = sequences(&env).iter().map(|(_, n)| *n).collect();
    assert_eq!(left, vec![5, 4]);
    let r = env.run(&["list"]);
    r.ok();
    assert!(!r.stderr.contains("missing"), "{}", r.stderr);
    env.run(&["verify", "--all"]).ok();
    let r = env.run(&["--json", "backup"]);
    r.ok();
    assert!(!r.stderr.contains("missing"), "{}", r.stderr);

    // A host with the same policy and no memory judges the gaps from the signed facts alone.
    let mut reader = signed_env();
    reader.extra = env.extra.clone();
    reader.destinations = vec![dest(
        "local",
        &format!("file://{}", env.path("backups").display()),
    )];
    let r = reader.run(&["list"]);
    r.ok();
    assert!(!r.stderr.contains("missing"), "{}", r.stderr);
    // Deleting a backup the policy keeps is still seen after the prune.
    delete_backup(&env, &ids[4]);
    reader
        .run(&["list"])
        .ok()
        .stderr_has(&format!("#5 {}", ids[4]))
        .stderr_has("deleted out of turn");
}

#[test]
fn the_line_continues_after_state_dir_is_lost_and_a_planted_number_counts_for_nothing() {
    let env = signed_env();
    let ids: Vec<String> = (0..2).map(|_| env.backup()).collect();
    fs::remove_dir_all(env.state()).unwrap();
    let third = env.backup();
    assert_eq!(sidecar(&env, &third)["sequence"]["number"], 3);
    assert_eq!(
        sidecar(&env, &third)["sequence"]["previous"]["id"],
        ids[1].as_str()
    );

    // A planted sidecar (unsigned) numbered far ahead: not trusted, so it neither raises the
    // line (every genuine backup would look rolled back) nor numbers the next backup.
    let mut plant = sidecar(&env, &third);
    let planted_id = "29990101T000000Z-0000";
    plant["manifest"]["backup_id"] = planted_id.into();
    plant["sequence"]["number"] = 1_000_000.into();
    let archive = plant["archive"]["object"].as_str().unwrap().to_string();
    fs::copy(
        env.store().join(&archive),
        env.store().join(archive.replace(&third, planted_id)),
    )
    .unwrap();
    plant["archive"]["object"] = archive.replace(&third, planted_id).into();
    fs::write(
        env.store().join(format!("{planted_id}.json")),
        serde_json::to_vec_pretty(&plant).unwrap(),
    )
    .unwrap();
    let r = env.run(&["list"]);
    assert!(!r.stderr.contains("rolled back"), "{}", r.stderr);
    let fourth = env.backup();
    assert_eq!(sidecar(&env, &fourth)["sequence"]["number"], 4);
    let r = env.run(&["list"]);
    assert!(!r.stderr.contains("rolled back"), "{}", r.stderr);
    assert!(!r.stderr.contains("out of turn"), "{}", r.stderr);
}
