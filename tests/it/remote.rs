//! Every backend passes the same round trip (backup, list, verify, restore, prune), against real
//! servers on 127.0.0.1; plus the failures users meet: a server down, a wrong secret, an unknown
//! host key, a run killed in the middle of an upload.

use std::fs;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::servers::*;

/// An environment whose only destination is `url` (plus `extra` keys in its table).
fn env_for(url: &str, extra: &str) -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 500);
    let etc = env.add_source("etc", "dir", "");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("server.conf"), "listen = 1812\n").unwrap();
    env.with_age_key();
    env.extra = "[retention]\nkeep_last = 1\n".into();
    env.destinations = vec![format!("{}{extra}\n", dest("remote", url))];
    env
}

fn s3_env(server: &S3Server, bucket: &str, extra: &str) -> Env {
    let url = format!(
        "s3://{bucket}/backups?endpoint={}&region=us-east-1",
        server.endpoint()
    );
    let mut env = env_for(&url, extra);
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
    ];
    env
}

/// The round trip every backend must pass. `objects` lists what the backend holds for this host.
fn round_trip(env: &Env, objects: &dyn Fn() -> Vec<String>) {
    env.run(&["check"])
        .ok()
        .stdout_has("write, read, list and delete work");
    let first = env.backup();
    let db = env.path("data/auth.db");
    let writer = Writer::start(&db);
    let second = env.backup();
    writer.stop();
    let ids: Vec<String> = env
        .list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![second.clone(), first.clone()]);
    assert_eq!(env.list()[0]["destination"], "remote");
    env.run(&["verify", "--all"]).ok();
    let out = env.path("restored");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert!(check_ledger(&out.join("auth.db")) >= 500);
    assert_eq!(
        fs::read_to_string(out.join("etc/server.conf")).unwrap(),
        "listen = 1812\n"
    );
    env.run(&["prune"]).ok();
    let ids: Vec<String> = env
        .list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![second.clone()]);
    let stored = objects();
    assert_eq!(
        stored.len(),
        2,
        "one archive and one sidecar should remain: {stored:?}"
    );
    assert!(stored.iter().all(|o| o.contains(&second)), "{stored:?}");
}

/// Files below `dir`, relative, as a backend's server stores them.
fn files_below(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn file_destination_round_trip() {
    let env = env_for("file://__ROOT__/remote", "");
    fs::create_dir(env.path("remote")).unwrap();
    let root = env.path("remote/test-host");
    round_trip(&env, &|| files_below(&root));
}

#[test]
fn s3_destination_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let env = s3_env(&server, "bkt", "");
    let root = tmp.path().join("bkt/backups/test-host");
    round_trip(&env, &|| {
        files_below(&root)
            .into_iter()
            .filter(|f| !f.starts_with('.'))
            .collect()
    });
}

#[test]
fn sftp_destination_round_trip() {
    // The tests' ssh client has its own known_hosts: the user's is neither read nor written.
    let users =
        std::path::Path::new(&std::env::var("HOME").unwrap_or_default()).join(".ssh/known_hosts");
    let before = fs::read(&users).ok();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = SshServer::start(&tmp.path().join("sshd"));
    server.trust();
    assert!(fs::read_to_string(known_hosts_path())
        .unwrap()
        .contains(&format!("[127.0.0.1]:{}", server.port)));
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let env = env_for(
        &server.url(&store),
        &format!("key = \"{}\"", server.client_key.display()),
    );
    let root = store.join("test-host");
    round_trip(&env, &|| files_below(&root));
    assert_eq!(
        fs::read(&users).ok(),
        before,
        "{} was changed",
        users.display()
    );
}

#[test]
fn sftp_objects_and_folders_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = SshServer::start(&tmp.path().join("sshd"));
    server.trust();
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let env = env_for(
        &server.url(&store),
        &format!("key = \"{}\"", server.client_key.display()),
    );
    let id = env.backup();
    let root = store.join("test-host");
    assert_eq!(mode_of(&root), 0o700, "the namespace folder");
    assert_eq!(mode_of(&root.join("tmp")), 0o700, "tmp/");
    let files = files_below(&root);
    assert!(files.iter().any(|f| f.starts_with(&id)), "{files:?}");
    for f in &files {
        assert_eq!(mode_of(&root.join(f)), 0o600, "{f}");
    }
    // A second backup on the same session kind keeps it so.
    env.backup();
    for f in files_below(&root) {
        assert_eq!(mode_of(&root.join(&f)), 0o600, "{f}");
    }
}

#[test]
fn other_opendal_services_plug_in_by_scheme_and_options() {
    let mut env = env_for("file:///unused", "");
    let root = env.path("via-scheme");
    env.destinations = vec![format!(
        "[[destination]]\nname = \"remote\"\nscheme = \"fs\"\n[destination.options]\nroot = \"{}\"\n",
        root.display()
    )];
    round_trip(&env, &|| files_below(&root.join("test-host")));
}

#[test]
fn one_archive_goes_to_three_destinations_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"), &["bkt"]);
    let mut ssh = SshServer::start(&tmp.path().join("sshd"));
    ssh.trust();
    let mut env = s3_env(&s3, "bkt", "");
    env.destinations
        .push(dest("local", "file://__ROOT__/local"));
    fs::create_dir(env.path("local")).unwrap();
    fs::create_dir(tmp.path().join("sftp")).unwrap();
    env.destinations.push(format!(
        "{}key = \"{}\"\n",
        dest("sftp", &ssh.url(&tmp.path().join("sftp"))),
        ssh.client_key.display()
    ));
    let doc = env.run(&["--json", "backup"]).ok().json();
    let results = doc["destinations"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let size = results[0]["bytes"].as_u64().unwrap();
    for r in results {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(
            r["bytes"].as_u64().unwrap(),
            size,
            "every destination stores the same archive"
        );
    }
    assert_eq!(env.list().len(), 3);
    // With one destination down, the others still get the backup: exit 3, partial.
    drop(ssh);
    let r = env.run(&["--json", "backup"]);
    r.code(3);
    let doc = r.json();
    let failed: Vec<&serde_json::Value> = doc["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "sftp");
}

#[test]
fn s3_server_down_is_retried_then_fails_in_bounded_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = S3Server::start(tmp.path(), &["bkt"]);
    let env = s3_env(&server, "bkt", "retries = 2\ntimeout = \"5s\"");
    server.stop();
    let start = Instant::now();
    let r = env.run(&["backup"]);
    let took = start.elapsed();
    r.code(1).stderr_has("remote").stderr_has("hint:");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(
        took > Duration::from_millis(400),
        "no retry happened: {took:?}"
    );
}

#[test]
fn a_wrong_s3_secret_fails_fast_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let mut env = s3_env(&server, "bkt", "");
    env.vars[1].1 = "not-the-secret-4f9a8b7c".into();
    let start = Instant::now();
    let r = env.run(&["backup"]);
    r.code(1).stderr_has("remote").stderr_has("credentials");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "a permanent error must not be retried for long"
    );
    for secret in ["not-the-secret-4f9a8b7c", S3_SECRET_KEY] {
        assert!(
            !r.stderr.contains(secret) && !r.stdout.contains(secret),
            "the secret leaked: {}",
            r.stderr
        );
    }
    let r = env.run(&["check"]);
    r.code(1).stderr_has("remote");
    assert!(!r.stderr.contains("not-the-secret-4f9a8b7c"));
}

#[test]
fn missing_s3_credentials_say_where_to_put_them() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let mut env = s3_env(&server, "bkt", "");
    env.vars.clear();
    env.run(&["backup"]).code(2).stderr_has("AWS_ACCESS_KEY_ID");
    // A credentials file works instead, and must be private.
    let creds = env.path("aws-credentials");
    fs::write(&creds, format!("[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n")).unwrap();
    fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let url = format!(
        "s3://bkt/backups?endpoint={}&region=us-east-1",
        server.endpoint()
    );
    env.destinations = vec![format!(
        "{}credentials_file = \"{}\"\n",
        dest("remote", &url),
        creds.display()
    )];
    env.backup();
    fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    env.run(&["backup"]).code(2).stderr_has("chmod 600");
}

#[test]
fn a_missing_bucket_fails_naming_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let env = s3_env(&server, "nosuchbucket", "");
    let r = env.run(&["backup"]);
    r.code(1).stderr_has("remote");
    env.run(&["check"]).code(1).stderr_has("remote");
}

#[test]
fn an_unknown_sftp_host_key_is_refused_unless_accept_new() {
    let tmp = tempfile::tempdir().unwrap();
    let server = SshServer::start(&tmp.path().join("sshd"));
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let key = format!("key = \"{}\"", server.client_key.display());
    let env = env_for(&server.url(&store), &key);
    let start = Instant::now();
    let r = env.run(&["backup"]);
    r.code(1).stderr_has("remote").stderr_has("known_hosts");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(!store.join("test-host").exists() || files_below(&store).is_empty());

    let env = env_for(
        &server.url(&store),
        &format!("{key}\nhost_key_check = \"accept-new\""),
    );
    env.backup();
    assert_eq!(env.list().len(), 1);
}

#[test]
fn a_password_in_an_sftp_url_is_refused_and_points_to_keys() {
    let env = env_for(
        "sftp://backup:hunter2@127.0.0.1:22/srv",
        "key = \"/nonexistent\"",
    );
    let r = env.run(&["list"]);
    r.code(2).stderr_has("key");
    assert!(!r.stderr.contains("hunter2"));
}

/// Kill -9 in the middle of the upload: no listed backup, and the next run succeeds.
fn killed_mid_upload(env: &Env, objects: &dyn Fn() -> Vec<String>) {
    // Large and incompressible, uploaded under a bandwidth limit: the upload takes seconds.
    create_bulk(&env.path("data/bulk.db"), 24);
    let child = env.spawn(&["backup"]);
    assert!(
        kill_after(child, Duration::from_millis(2500)),
        "the backup ended before it could be killed"
    );
    assert!(env.list().is_empty(), "a killed backup is listed");
    assert!(
        !objects().iter().any(|o| o.ends_with(".json")),
        "a sidecar exists: {:?}",
        objects()
    );
    let mut env2 = Env { ..clone_env(env) };
    env2.destinations = env
        .destinations
        .iter()
        .map(|d| d.replace("bandwidth_limit = \"4MiB\"", ""))
        .collect();
    env2.backup();
    assert_eq!(env2.list().len(), 1);
    let left = objects();
    assert!(
        left.iter().all(|o| !o.contains("tmp/")),
        "leftovers after the next run: {left:?}"
    );
}

fn clone_env(env: &Env) -> Env {
    Env {
        tmp: tempfile::tempdir().unwrap(),
        extra: env.extra.clone(),
        encryption: env.encryption.clone(),
        sources: env.sources.clone(),
        destinations: env.destinations.clone(),
        vars: env.vars.clone(),
        state_dir: env.state_dir.clone(),
        incremental: env.incremental.clone(),
        name: env.name.clone(),
    }
}

#[test]
fn s3_kill_9_mid_upload_leaves_no_listed_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(tmp.path(), &["bkt"]);
    let mut env = s3_env(&server, "bkt", "bandwidth_limit = \"4MiB\"");
    env.add_sqlite("bulk.db");
    let root = tmp.path().join("bkt/backups/test-host");
    killed_mid_upload(&env, &|| files_below(&root));
}

#[test]
fn sftp_kill_9_mid_upload_leaves_no_listed_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = SshServer::start(&tmp.path().join("sshd"));
    server.trust();
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let mut env = env_for(
        &server.url(&store),
        &format!(
            "key = \"{}\"\nbandwidth_limit = \"4MiB\"",
            server.client_key.display()
        ),
    );
    env.add_sqlite("bulk.db");
    let root = store.join("test-host");
    killed_mid_upload(&env, &|| files_below(&root));
}
