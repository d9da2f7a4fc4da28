//! Who made a backup. A backup planted by someone with write access to the storage, built with
//! the real `age`, `zstd`, `tar` and `b3sum`, is refused once signers are trusted; a genuine
//! signature is one `ssh-keygen -Y verify` accepts; SSH keys work as age recipients and
//! identities; `key generate` makes keys that work.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::*;

/// `litevault key generate` (with `--signing`), checked; returns the public line.
fn generate(env: &Env, file: &Path, signing: bool) -> String {
    let mut args = vec!["key", "generate", file.to_str().unwrap()];
    if signing {
        args.push("--signing");
    }
    let r = env.run(&args);
    r.ok();
    assert_eq!(mode_of(file), 0o600, "{}", file.display());
    r.stdout.trim().to_string()
}

/// An environment that encrypts to a generated age key, signs with a generated SSH key and
/// trusts that key; returns (env, signer's public line).
fn signed_env() -> (Env, String) {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 100);
    let key = env.path("age.key");
    let recipient = generate(&env, &key, false);
    assert!(recipient.starts_with("age1"), "{recipient}");
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        key.display()
    ));
    let signing = env.path("signing.key");
    let public = generate(&env, &signing, true);
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    env.extra = format!(
        "[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{public}\"]\n",
        signing.display()
    );
    (env, public)
}

fn sh_ok(script: &str, dir: &Path) -> String {
    let r = sh(script, dir);
    assert_eq!(r.code, 0, "{script}\n{}", r.stderr);
    r.stdout
}

#[test]
fn a_signature_is_one_ssh_keygen_accepts() {
    require_tool("ssh-keygen");
    let (env, public) = signed_env();
    let id = env.backup();
    let store = env.store();
    assert!(store.join(format!("{id}.json.sig")).is_file());
    fs::write(env.path("allowed_signers"), format!("litevault {public}\n")).unwrap();
    let allowed = env.path("allowed_signers");
    let out = sh_ok(
        &format!(
            "ssh-keygen -Y verify -f {} -I litevault -n litevault -s {id}.json.sig < {id}.json",
            allowed.display()
        ),
        &store,
    );
    assert!(out.contains("Good \"litevault\" signature"), "{out}");
    // The same signature over a sidecar changed by one byte is refused by ssh-keygen too.
    let tampered = env.path("tampered.json");
    let mut body = fs::read(store.join(format!("{id}.json"))).unwrap();
    body.push(b'\n');
    fs::write(&tampered, body).unwrap();
    let r = sh(
        &format!(
            "ssh-keygen -Y verify -f {} -I litevault -n litevault -s {id}.json.sig < {}",
            allowed.display(),
            tampered.display()
        ),
        &store,
    );
    assert_ne!(r.code, 0);
    env.run(&["verify", &id]).ok();
    let listed = env.list();
    assert!(listed[0]["signed_by"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    assert!(listed[0]["untrusted"].is_null());
}

/// Plant a backup the way an attacker with the public recipient and write access would: a
/// database of their own, packed with the real tools, a hand-made sidecar, dated newest.
fn plant(env: &Env, genuine: &str, recipient: &str) -> String {
    let work = env.path("attacker");
    fs::create_dir_all(&work).unwrap();
    create_ledger(&work.join("auth.db"), "DELETE", 3);
    let b3 = sh_ok("b3sum --no-names auth.db", &work);
    let size = fs::metadata(work.join("auth.db")).unwrap().len();
    let sidecar_path = env.store().join(format!("{genuine}.json"));
    let mut sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(&sidecar_path).unwrap()).unwrap();
    // Dated a few seconds after the genuine one, so it is the newest.
    let when = humantime::parse_rfc3339(sidecar["manifest"]["created"].as_str().unwrap()).unwrap()
        + std::time::Duration::from_secs(5);
    let created = humantime::format_rfc3339_millis(when).to_string();
    let id = humantime::format_rfc3339_seconds(when)
        .to_string()
        .replace(['-', ':'], "")
        + "-beef";
    assert_eq!(id.len(), genuine.len(), "{id}");
    let manifest = &mut sidecar["manifest"];
    manifest["backup_id"] = id.clone().into();
    manifest["created"] = created.into();
    manifest["files"] = serde_json::json!([{
        "path": "auth.db", "source": "auth.db", "size": size, "blake3": b3.trim(), "mode": 384
    }]);
    manifest["databases"][0]["row_counts"] = serde_json::json!({});
    manifest["databases"][0]["journal_mode"] = "delete".into();
    let manifest_text = serde_json::to_vec_pretty(&manifest).unwrap();
    fs::write(work.join("manifest.json"), &manifest_text).unwrap();
    sh_ok("b3sum auth.db > BLAKE3SUMS", &work);
    let object = format!("{id}.tar.zst.age");
    let archive = env.store().join(&object);
    sh_ok(
        &format!(
            "tar -c auth.db manifest.json BLAKE3SUMS | zstd -q | age -r {recipient} > {}",
            archive.display()
        ),
        &work,
    );
    let stored = fs::read(&archive).unwrap();
    sidecar["archive"]["object"] = object.into();
    sidecar["archive"]["bytes"] = stored.len().into();
    sidecar["archive"]["blake3"] = blake3::hash(&stored).to_hex().to_string().into();
    fs::write(
        env.store().join(format!("{id}.json")),
        serde_json::to_vec_pretty(&sidecar).unwrap(),
    )
    .unwrap();
    id
}

#[test]
fn a_planted_backup_is_refused_and_latest_is_the_genuine_one() {
    for tool in ["age", "zstd", "tar", "b3sum", "ssh-keygen"] {
        require_tool(tool);
    }
    let (mut env, _) = signed_env();
    let genuine = env.backup();
    let recipient = public_key(&env.path("age.key"));
    let planted = plant(&env, &genuine, &recipient);

    // The plant is a well-formed backup: without [trust], it passes every other check.
    let trusting = env.extra.clone();
    env.extra = trusting.split("[trust]").next().unwrap().to_string();
    env.run(&["verify", &planted]).ok();
    env.extra = trusting;

    let ids: Vec<String> = env
        .list()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids[0], planted, "the planted backup is dated newest");
    assert!(env.list()[0]["untrusted"]
        .as_str()
        .unwrap()
        .contains("not signed"));

    env.run(&["verify", &planted])
        .code(4)
        .stderr_has(&planted)
        .stderr_has("not signed");
    let out = env.path("out");
    env.run(&["restore", &planted, "--to", out.to_str().unwrap()])
        .code(4)
        .stderr_has("not signed");
    assert!(!out.exists());
    let r = env.run(&["restore", "latest", "--to", out.to_str().unwrap()]);
    r.ok().stderr_has("passed over").stderr_has(&planted);
    assert_eq!(
        check_ledger(&out.join("auth.db")),
        100,
        "not the genuine database"
    );
    // Counted nowhere: the metrics see one backup, the genuine one.
    let metrics = env.path("metrics.prom");
    env.run(&[
        "--metrics-file",
        metrics.to_str().unwrap(),
        "verify",
        "--all",
    ])
    .code(4)
    .stderr_has(&planted);
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("litevault_backups{host=\"test-host\",destination=\"local\"} 1"),
        "{text}"
    );
    // Prune's "never delete the newest" is about the newest trusted backup: the genuine one
    // stays, the planted one is left in place and reported.
    let keep_one = format!("{}[retention]\nkeep_last = 1\n", env.extra);
    let saved = std::mem::replace(&mut env.extra, keep_one);
    env.run(&["prune"])
        .code(4)
        .stderr_has(&planted)
        .stdout_has(&format!("keep   {genuine}"));
    env.extra = saved;
    assert_eq!(env.list().len(), 2);

    // Signed, but by the attacker's own key: still refused, and said so.
    let attacker = env.path("attacker/key");
    sh_ok(
        &format!(
            "ssh-keygen -q -t ed25519 -N '' -f {k} && ssh-keygen -q -Y sign -f {k} -n litevault {planted}.json",
            k = attacker.display()
        ),
        &env.store(),
    );
    env.run(&["verify", &planted])
        .code(4)
        .stderr_has("not trusted");

    // The genuine sidecar changed by a byte: its signature no longer matches.
    let sidecar = env.store().join(format!("{genuine}.json"));
    let mut body = fs::read(&sidecar).unwrap();
    body.push(b' ');
    fs::write(&sidecar, &body).unwrap();
    env.run(&["verify", &genuine])
        .code(4)
        .stderr_has("does not match");
    body.pop();
    fs::write(&sidecar, &body).unwrap();
    env.run(&["verify", &genuine]).ok();
}

#[test]
fn an_old_backup_replayed_under_a_new_name_is_refused() {
    let (env, _) = signed_env();
    let old = env.backup();
    let new = format!("2099{}", &old[4..]);
    for suffix in [".json", ".json.sig", ".tar.zst.age"] {
        fs::copy(
            env.store().join(format!("{old}{suffix}")),
            env.store().join(format!("{new}{suffix}")),
        )
        .unwrap();
    }
    env.run(&["verify", &new])
        .code(4)
        .stderr_has("describes another backup");
    // The genuine one is over a second old; only the replay could look fresh.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = env.run(&["--json", "backup", "--if-older-than", "1s"]);
    r.ok();
    assert!(
        r.json()["skipped_run"].is_null(),
        "the replay made the run skip"
    );
}

#[test]
fn damaged_planted_or_untrusted_newest_never_makes_if_older_than_skip() {
    let (env, _) = signed_env();
    let genuine = env.backup();
    let recipient = public_key(&env.path("age.key"));
    // Only an untrusted backup is recent: the genuine one is removed.
    let planted = plant(&env, &genuine, &recipient);
    for suffix in [".json", ".json.sig", ".tar.zst.age"] {
        fs::remove_file(env.store().join(format!("{genuine}{suffix}"))).unwrap();
    }
    let r = env.run(&["backup", "--if-older-than", "1h"]);
    r.ok().stderr_has(&planted).stderr_has("not trusted");
    assert!(!r.stdout.contains("skipped"));
}

#[test]
fn ssh_keys_work_as_recipient_and_identity_and_age_opens_the_backup() {
    require_tool("ssh-keygen");
    require_tool("age");
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 20);
    let key: PathBuf = env.path("id_ed25519");
    sh_ok(
        &format!("ssh-keygen -q -t ed25519 -N '' -f {}", key.display()),
        env.root(),
    );
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    env.encryption = Some(format!(
        "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n",
        public.trim(),
        key.display()
    ));
    let id = env.backup();
    env.run(&["verify", &id]).ok();
    let out = env.path("out");
    fs::create_dir_all(&out).unwrap();
    sh_ok(
        &format!(
            "age -d -i {} {}/{id}.tar.zst.age | zstd -dq | tar -x",
            key.display(),
            env.store().display()
        ),
        &out,
    );
    assert_eq!(check_ledger(&out.join("auth.db")), 20);
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(sidecar["archive"]["recipients"][0], public.trim());
}

#[test]
fn a_signing_key_others_can_read_is_refused() {
    let (env, _) = signed_env();
    fs::set_permissions(
        env.path("signing.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    env.run(&["backup"]).code(2).stderr_has("chmod 600");
    assert!(env.list().is_empty());
}

#[test]
fn key_generate_never_overwrites_and_makes_working_keys() {
    require_tool("ssh-keygen");
    let env = Env::new();
    let key = env.path("k.txt");
    let recipient = generate(&env, &key, false);
    let text = fs::read_to_string(&key).unwrap();
    assert!(text.contains("AGE-SECRET-KEY-1"));
    assert!(text.contains(&format!("# public key: {recipient}")));
    env.run(&["key", "generate", key.to_str().unwrap()])
        .code(2)
        .stderr_has("already exists");
    assert_eq!(
        fs::read_to_string(&key).unwrap(),
        text,
        "the key was touched"
    );

    let signing = env.path("sign");
    let public = generate(&env, &signing, true);
    let derived = sh_ok(
        &format!("ssh-keygen -y -f {}", signing.display()),
        env.root(),
    );
    assert_eq!(
        derived.split_whitespace().nth(1),
        public.split_whitespace().nth(1),
        "ssh-keygen reads the key litevault wrote"
    );
    assert_eq!(
        fs::read_to_string(env.path("sign.pub")).unwrap().trim(),
        public
    );
}

/// Trust the signers in an allowed_signers file holding `text`, in place of `signers`.
fn trust_file(env: &mut Env, text: &str) -> PathBuf {
    let file = env.path("allowed_signers");
    fs::write(&file, text).unwrap();
    let signing = env.extra.split("[trust]").next().unwrap().to_string();
    env.extra = format!(
        "{signing}[trust]\nallowed_signers_file = \"{}\"\n",
        file.display()
    );
    file
}

#[test]
fn an_allowed_signers_file_with_no_key_for_litevault_is_a_config_error_not_trust_off() {
    let (mut env, public) = signed_env();
    env.backup();
    // Unsigned from here on: what a planted backup looks like to the reading side.
    for entry in fs::read_dir(env.store()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_str().unwrap().ends_with(".json.sig") {
            fs::remove_file(path).unwrap();
        }
    }
    let out = env.path("out");
    for text in [
        "# the backup hosts' keys go here\n\n".to_string(),
        format!("ops@example.com namespaces=\"git\" {public}\n"),
    ] {
        let file = trust_file(&mut env, &text);
        let file = file.to_str().unwrap();
        env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
            .code(2)
            .stderr_has(file)
            .stderr_has("no key");
        assert!(!out.exists(), "{text:?}: restored");
        env.run(&["list"]).code(2).stderr_has(file);
        env.run(&["check", "--role", "restore"])
            .code(2)
            .stderr_has(file);
    }
    // With the key allowed for litevault, trust is on: the unsigned backup is passed over.
    trust_file(
        &mut env,
        &format!("ops@example.com namespaces=\"litevault\" {public}\n"),
    );
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .code(4)
        .stderr_has("not signed");
    assert!(!out.exists());
}

#[test]
fn a_key_allowed_for_git_and_litevault_in_quotes_is_trusted() {
    let (mut env, public) = signed_env();
    let id = env.backup();
    trust_file(
        &mut env,
        &format!(
            "ops@example.com namespaces=\"git,litevault\",valid-after=\"20200101Z\" {public}\n"
        ),
    );
    env.run(&["verify", &id]).ok();
    let listed = env.list();
    assert!(listed[0]["untrusted"].is_null(), "{}", listed[0]);
    assert!(listed[0]["signed_by"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    let out = env.path("out");
    env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
        .ok();
    assert_eq!(check_ledger(&out.join("auth.db")), 100);

    // The same key limited to git (beside a key that is not this host's) vouches for nothing.
    let other = generate(&env, &env.path("other.key"), true);
    trust_file(
        &mut env,
        &format!("ops@example.com namespaces=\"git\" {public}\nops@example.com {other}\n"),
    );
    env.run(&["verify", &id]).code(4).stderr_has("not trusted");
}
