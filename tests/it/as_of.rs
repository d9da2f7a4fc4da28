//! Time travel over a versioned bucket (`--as-of`), against moto's S3 server with object lock:
//! after an attacker with the storage credential deletes, overwrites and plants backups, the
//! destination as it was before the attack lists, verifies and copies into a clean destination
//! exactly the genuine backups, and a restore from the copy gives the genuine data. A destination
//! that keeps no versions is a clear error, never an empty list.

use std::time::Duration;

use crate::harness::*;
use crate::servers::*;

/// The server itself, first: it keeps a deleted object's version behind a delete marker, lists
/// versions, and refuses to delete a locked version.
#[test]
fn moto_keeps_versions_and_refuses_to_delete_a_locked_one() {
    let moto = MotoServer::start();
    moto.locked_bucket("lockcheck", 1);
    let out = moto.boto3(
        "import hashlib, base64\n\
         md5 = base64.b64encode(hashlib.md5(b'one').digest()).decode()\n\
         s3.put_object(Bucket='lockcheck', Key='k', Body=b'one', ContentMD5=md5)\n\
         s3.delete_object(Bucket='lockcheck', Key='k')\n\
         r = s3.list_object_versions(Bucket='lockcheck', Prefix='k')\n\
         v = r['Versions'][0]['VersionId']\n\
         print(len(r['Versions']), len(r['DeleteMarkers']))\n\
         try:\n    s3.delete_object(Bucket='lockcheck', Key='k', VersionId=v)\n    print('deleted')\n\
         except Exception as e:\n    print('refused', type(e).__name__)",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 1", "{out}");
    assert!(lines[1].starts_with("refused"), "{out}");
}

fn ids(env: &Env, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--json", "list"];
    all.extend_from_slice(args);
    let r = env.run(&all);
    r.ok();
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn after_an_attack_the_bucket_as_it_was_gives_back_the_genuine_backups() {
    let moto = MotoServer::start();
    moto.locked_bucket("locked", 1);
    moto.boto3("s3.create_bucket(Bucket='clean')");
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 100);
    env.with_age_key();
    let key = env.path("signing_key");
    env.run(&["key", "generate", "--signing", key.to_str().unwrap()])
        .ok();
    let signer = std::fs::read_to_string(env.path("signing_key.pub")).unwrap();
    env.extra = format!(
        "[signing]\nkey_file = \"{}\"\n[trust]\nsigners = [\"{}\"]\n",
        key.display(),
        signer.trim()
    );
    let url = |bucket: &str| {
        format!(
            "s3://{bucket}/backups?endpoint={}&region=us-east-1",
            moto.endpoint()
        )
    };
    env.destinations = vec![dest("locked", &url("locked")), dest("clean", &url("clean"))];
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), "k".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
    ];

    // Five genuine backups, the ledger growing between them.
    let mut genuine = Vec::new();
    let mut rows = Vec::new();
    for round in 0..5 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for k in 0..20 {
            ledger_step(&conn, 101 + round * 20 + k);
        }
        drop(conn);
        rows.push(check_ledger(&db));
        let r = env.run(&["--json", "backup", "--dest", "locked"]);
        genuine.push(r.ok().json()["id"].as_str().unwrap().to_string());
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(1500));

    // The attack, with the storage credential: the three newest deleted, the second
    // overwritten with garbage, and a backup planted.
    let ns = format!("backups/{}", env.name);
    let mut script = String::new();
    for id in &genuine[2..] {
        for suffix in [".json", ".json.sig", ".tar.zst.age"] {
            script.push_str(&format!(
                "s3.delete_object(Bucket='locked', Key='{ns}/{id}{suffix}')\n"
            ));
        }
    }
    script.push_str(&format!(
        "import hashlib, base64\nbody = b'garbage' * 100\n\
         md5 = base64.b64encode(hashlib.md5(body).digest()).decode()\n\
         s3.put_object(Bucket='locked', Key='{ns}/{}.tar.zst.age', Body=body, ContentMD5=md5)\n",
        genuine[1]
    ));
    let planted = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ-beef")
        .to_string();
    let planted = planted.as_str();
    script.push_str(&format!(
        "def put(key, body):\n    s3.put_object(Bucket='locked', Key=key, Body=body, ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode())\n\
         g = lambda key: s3.get_object(Bucket='locked', Key=key)['Body'].read()\n\
         put('{ns}/{planted}.tar.zst.age', g('{ns}/{g0}.tar.zst.age'))\n\
         put('{ns}/{planted}.json', g('{ns}/{g0}.json').replace(b'{g0}', b'{planted}'))\n",
        g0 = genuine[0]
    ));
    moto.boto3(&script);

    // Today: the deleted are gone, the overwritten one is damaged, the planted one refused.
    let r = env.run(&["--json", "list", "--dest", "locked"]);
    let now = r.ok().json();
    let standing = |id: &str| {
        now.as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .map(|b| b["standing"].as_str().unwrap().to_string())
    };
    assert_eq!(standing(&genuine[2]), None, "{now:#}");
    assert_eq!(standing(&genuine[1]).as_deref(), Some("damaged"), "{now:#}");
    assert_eq!(standing(planted).as_deref(), Some("untrusted"), "{now:#}");
    // The host saw all five: the deletion is a finding, naming each backup taken away (the
    // planted one, unsigned, neither fills the line nor raises it).
    r.stderr_has("the newest backup there is #2, but #5 was seen before");
    for (k, id) in genuine.iter().enumerate().skip(2) {
        r.stderr_has(&format!("#{} {id} (last seen ", k + 1));
    }
    env.run(&["verify", "--all", "--dest", "locked"])
        .code(4)
        .stderr_has("rolled back");

    // As it was: exactly the genuine five, and they verify.
    assert_eq!(
        ids(&env, &["--dest", "locked", "--as-of", &before]),
        genuine.iter().rev().cloned().collect::<Vec<_>>()
    );
    env.run(&["verify", "--all", "--dest", "locked", "--as-of", &before])
        .ok();
    // Read straight from the past too: show and restore.
    env.run(&["show", &genuine[4], "--dest", "locked", "--as-of", &before])
        .ok();
    let direct = env.path("direct");
    env.run(&[
        "restore",
        "latest",
        "--dest",
        "locked",
        "--as-of",
        &before,
        "--to",
        direct.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(check_ledger(&direct.join("auth.db")), rows[4]);
    // The README's runbook, as written: list, verify, copy into the clean bucket, restore.
    let out = env.path("restored");
    let config = env.write_config();
    let runbook = crate::readme::readme_block("as-of-runbook")
        .replace("offsite", "locked")
        .replace("2026-12-01T00:00:00Z", &before)
        .replace("/srv/restore", out.to_str().unwrap());
    // The credentials in the environment, as an operator would have them.
    let runbook = format!("export AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s\n{runbook}");
    let r = crate::readme::run_block(&runbook, env.root(), Some(&config));
    for id in &genuine {
        assert!(
            r.stdout.contains(id.as_str()),
            "{id} not listed:\n{}",
            r.stdout
        );
    }
    assert_eq!(ids(&env, &["--dest", "clean"]).len(), 5);
    assert_eq!(check_ledger(&out.join("auth.db")), rows[4]);

    // A time before the first backup: nothing was there, and it says so.
    let r = env.run(&[
        "list",
        "--dest",
        "locked",
        "--as-of",
        "2000-01-01T00:00:00Z",
    ]);
    r.ok().stdout_has("no complete backups");
}

#[test]
fn as_of_on_a_destination_without_versions_is_an_error_naming_it() {
    let mut env = Env::new();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 10);
    env.backup();
    let r = env.run(&["list", "--as-of", "1h"]);
    r.code(2)
        .stderr_has("destination local")
        .stderr_has("keeps no versions");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}
