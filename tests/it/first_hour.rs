//! Issue 23, the first hour with litevault: quiet runs that are quiet, errors that say what to
//! do, examples and scripts that fit together, and progress on long work.

use crate::harness::*;

fn env_with_db() -> Env {
    let mut env = Env::new();
    let db = env.add_sqlite("a.db");
    create_ledger(&db, "WAL", 10);
    env
}

#[test]
fn encryption_none_silences_the_unencrypted_warning_and_a_missing_table_still_warns() {
    let mut env = env_with_db();
    // No [encryption] table: nobody said plain backups are meant, so even --quiet says it.
    let r = env.run(&["--quiet", "backup"]);
    r.ok().stderr_has("warning: this backup is NOT encrypted");
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    env.encryption = Some("[encryption]\nnone = true\n".into());
    let r = env.run(&["--quiet", "backup"]);
    r.ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    // Not under a person's eyes either: it was chosen.
    let r = env.run(&["backup", "--full"]);
    r.ok().stdout_has("unencrypted");
    assert!(!r.stderr.contains("NOT encrypted"), "{}", r.stderr);

    // none = true with a key is a contradiction, named.
    env.encryption = Some(
        "[encryption]\nnone = true\nrecipients = [\"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\"]\n"
            .into(),
    );
    env.run(&["backup"])
        .code(2)
        .stderr_has("`encryption.recipients` cannot be combined with `encryption.none = true`");
}
