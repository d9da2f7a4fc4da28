//! Retention: the union of the rules, dry runs, the newest always kept, clock skew refused.

use crate::harness::*;

fn env_with_backups(n: usize, retention: &str) -> (Env, Vec<String>) {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env.extra = retention.to_string();
    let ids = (0..n).map(|_| env.backup()).collect();
    (env, ids)
}

fn listed(env: &Env) -> Vec<String> {
    env.list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn prune_keeps_what_the_policy_says_and_dry_run_deletes_nothing() {
    let (env, ids) = env_with_backups(4, "[retention]\nkeep_last = 2\n");
    let r = env.run(&["prune", "--dry-run"]);
    r.ok().stdout_has("would delete").stdout_has("last 1/2");
    assert_eq!(listed(&env).len(), 4);

    let r = env.run(&["--json", "prune"]);
    r.ok();
    let doc = r.json();
    assert_eq!(
        doc["destinations"][0]["deleted"].as_array().unwrap().len(),
        2
    );
    let mut expect = vec![ids[3].clone(), ids[2].clone()];
    expect.sort();
    let mut got = listed(&env);
    got.sort();
    assert_eq!(got, expect);
    // Both objects of each deleted backup are gone.
    assert_eq!(env.stored_files().len(), 4, "{:?}", env.stored_files());
}

#[test]
fn prune_without_a_policy_refuses() {
    let (env, _) = env_with_backups(2, "");
    env.run(&["prune"]).code(2).stderr_has("retention");
    assert_eq!(listed(&env).len(), 2);
}

#[test]
fn the_newest_backup_is_never_deleted() {
    let (env, ids) = env_with_backups(2, "[retention]\nkeep_within = \"0s\"\nkeep_hourly = 0\n");
    env.run(&["prune"]).ok();
    assert_eq!(listed(&env), vec![ids[1].clone()]);
}

#[test]
fn prune_after_backup_applies_the_policy_as_the_last_step() {
    let (env, ids) = env_with_backups(3, "[retention]\nkeep_last = 2\nprune_after_backup = true\n");
    let got = listed(&env);
    assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);
}

#[test]
fn a_destination_may_override_the_policy() {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env.extra = "[retention]\nkeep_last = 3\n".into();
    env.destinations.push(format!(
        "{}[destination.retention]\nkeep_last = 1\n",
        dest("short", "file://__ROOT__/short")
    ));
    for _ in 0..3 {
        env.backup();
    }
    env.run(&["prune"]).ok();
    assert_eq!(env.count_on("local"), 3);
    assert_eq!(env.count_on("short"), 1);
}
