//! The committed completions and man pages are exactly what the binary generates.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

#[test]
fn committed_completions_match_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shell, file) in [
        ("bash", "litevault.bash"),
        ("zsh", "_litevault"),
        ("fish", "litevault.fish"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let committed = fs::read(root.join("completions").join(file)).unwrap_or_else(|e| {
            panic!("completions/{file}: {e}; regenerate with scripts/gen-docs")
        });
        assert!(
            committed == out.stdout,
            "completions/{file} is stale; regenerate with scripts/gen-docs"
        );
    }
}

#[test]
fn committed_man_pages_match_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("man")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut generated: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    let mut committed: Vec<String> = fs::read_dir(root.join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    assert_eq!(
        generated, committed,
        "man/ is stale; regenerate with scripts/gen-docs"
    );
    for name in generated {
        assert!(
            fs::read(tmp.path().join(&name)).unwrap()
                == fs::read(root.join("man").join(&name)).unwrap(),
            "man/{name} is stale; regenerate with scripts/gen-docs"
        );
    }
    assert!(committed.contains(&"litevault-backup.1".to_string()));
}

#[test]
fn help_lists_the_exit_codes_and_every_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "backup",
        "list",
        "restore",
        "verify",
        "prune",
        "5 locked",
        "4 integrity",
    ] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
}
