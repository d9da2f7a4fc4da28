//! The trust policy's decisions: who signed, for which namespace, when; and that a `[trust]`
//! yielding no key is refused rather than read as "trust off".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::exit::Exit;

const BODY: &[u8] = b"{\"format\":\"litevault-sidecar\"}";

fn at(value: &str) -> SystemTime {
    let secs = timestamp::parse_in(value, &jiff::tz::TimeZone::UTC).unwrap();
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// A policy from an allowed_signers file holding `text`.
fn from_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf, Result<Verifier>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowed_signers");
    std::fs::write(&path, text).unwrap();
    let policy = Verifier::load(&[], Some(&path));
    (dir, path, policy)
}

fn key_of(signer: &Signer) -> String {
    signer
        .public_line()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The config error `text` makes: exit 2, naming the file, never quoting `key`.
fn config_error_of(text: &str, key: &str) -> String {
    let (_dir, path, policy) = from_file(text);
    let err = policy.expect_err("a config error");
    assert_eq!(crate::exit::classify(&err), Exit::Usage, "{err:#}");
    let message = crate::exit::describe(&err);
    assert!(
        message.contains(&path.display().to_string()),
        "names the file: {message}"
    );
    let blob = key.split(' ').nth(1).unwrap();
    assert!(!message.contains(blob), "quotes key material: {message}");
    message
}

#[test]
fn a_signature_is_judged_by_who_made_it_and_what_it_covers() {
    let signer = Signer::generate().unwrap();
    let other = Signer::generate().unwrap();
    let policy = Verifier::load(&[signer.public_line()], None).unwrap();
    let now = SystemTime::now();
    let sig = signer.sign(BODY).unwrap();
    assert!(matches!(
        policy.judge(BODY, Some(&sig), now),
        Verdict::Trusted(_)
    ));
    assert_eq!(policy.judge(BODY, None, now), Verdict::Unsigned);
    assert!(matches!(
        policy.judge(b"{\"format\":\"tampered\"}", Some(&sig), now),
        Verdict::BadSignature(_)
    ));
    let foreign = other.sign(BODY).unwrap();
    assert!(matches!(
        policy.judge(BODY, Some(&foreign), now),
        Verdict::UntrustedSigner(_)
    ));
    assert!(matches!(
        policy.judge(BODY, Some(b"garbage"), now),
        Verdict::BadSignature(_)
    ));
    let none = Verifier::load(&[], None).unwrap();
    assert!(!none.is_configured(), "no [trust] keys: no trust");
    assert_eq!(none.judge(BODY, None, now), Verdict::NotRequired);
}

#[test]
fn an_allowed_signers_file_without_a_usable_key_is_a_config_error_never_trust_off() {
    let signer = Signer::generate().unwrap();
    let key = key_of(&signer);
    for text in [
        String::new(),
        "# only a comment\n\n   \n".to_string(),
        format!("ops namespaces=\"git\" {key}\n"),
        format!("ops namespaces=\"git,file\" {key}\nops namespaces=\"*,!litevault\" {key}\n"),
        format!("ops namespaces=\"!git\" {key}\n"),
        format!("ops namespaces=\"git, litevault\" {key}\n"),
    ] {
        let message = config_error_of(&text, &key);
        assert!(message.contains("no key"), "{text:?}: {message}");
        assert!(
            message.contains("remove [trust]"),
            "says what to do: {message}"
        );
    }
    // Listed in `signers` too: the table yields a key, so the file's emptiness is no error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowed_signers");
    std::fs::write(&path, "# nothing yet\n").unwrap();
    let policy = Verifier::load(&[signer.public_line()], Some(&path)).unwrap();
    let sig = signer.sign(BODY).unwrap();
    assert!(policy.judge(BODY, Some(&sig), SystemTime::now()).is_good());
}

#[test]
fn a_key_for_litevault_among_other_namespaces_is_trusted() {
    let signer = Signer::generate().unwrap();
    let key = key_of(&signer);
    let sig = signer.sign(BODY).unwrap();
    for namespaces in [
        "git,litevault",
        "litevault",
        "lite*",
        "*",
        "git,l?tevault",
        "!git,*",
    ] {
        let (_dir, _, policy) = from_file(&format!(
            "ops@example.com namespaces=\"{namespaces}\" {key}\n"
        ));
        let verdict = policy.unwrap().judge(BODY, Some(&sig), SystemTime::now());
        assert!(
            matches!(verdict, Verdict::Trusted(_)),
            "{namespaces}: {verdict}"
        );
    }
    // Listed twice: once for git only, once for litevault.
    let other = Signer::generate().unwrap();
    let (_dir, _, policy) = from_file(&format!(
        "ops namespaces=\"git\" {key}\nops {}\n",
        key_of(&other)
    ));
    let verdict = policy.unwrap().judge(BODY, Some(&sig), SystemTime::now());
    assert!(
        matches!(verdict, Verdict::UntrustedSigner(_)),
        "a key limited to git vouches for nothing here: {verdict}"
    );
}

#[test]
fn a_key_must_be_valid_both_when_it_signed_and_now() {
    let signer = Signer::generate().unwrap();
    let key = key_of(&signer);
    let sig = signer.sign(BODY).unwrap();
    let judge = |text: &str, signed_at: SystemTime| {
        let (_dir, _, policy) = from_file(text);
        policy.unwrap().judge(BODY, Some(&sig), signed_at)
    };

    let since_2023 = format!("ops valid-after=\"20230101Z\" {key}\n");
    assert!(judge(&since_2023, at("20240601Z")).is_good());
    assert!(judge(&since_2023, at("20230101Z")).is_good(), "inclusive");
    let early = judge(&since_2023, at("20221231235959Z"));
    assert!(!early.is_good());
    let text = early.to_string();
    assert!(
        text.contains("valid-after") && text.contains("it was signed 2022-12-31T23:59:59Z"),
        "{text}"
    );
    assert!(text.contains("line 1"), "{text}");

    // Signed inside the window, but the window has closed: a retired key vouches no more.
    let until_2024 = format!("ops valid-before=\"20240101Z\" {key}\n");
    let late = judge(&until_2024, at("20230601Z"));
    assert!(
        matches!(&late, Verdict::OutsideWindow { why, .. } if why.contains("it is now")),
        "{late}"
    );
    assert!(late.to_string().contains("valid-before"), "{late}");

    // Signed after the window would close, with now still inside it.
    let until_2099 = format!("ops valid-before=\"20990101Z\" {key}\n");
    assert!(judge(&until_2099, SystemTime::now()).is_good());
    assert!(judge(&until_2099, at("20990101Z")).is_good(), "inclusive");
    assert!(!judge(&until_2099, at("20990101000001Z")).is_good());

    // Any one listing that allows it is enough, as for ssh-keygen.
    let twice =
        format!("{until_2024}ops valid-after=\"20200101\",valid-before=\"20990101\" {key}\n");
    assert!(judge(&twice, at("20230601Z")).is_good());
}

#[test]
fn cert_authority_and_malformed_lines_are_config_errors_naming_the_line() {
    let signer = Signer::generate().unwrap();
    let key = key_of(&signer);
    let good = format!("ops {key}\n");
    let message = config_error_of(&format!("{good}*@example.com cert-authority {key}\n"), &key);
    assert!(
        message.contains("line 2") && message.contains("cert-authority"),
        "{message}"
    );
    let message = config_error_of(
        &format!("# a comment\n{good}ops namespaces=\"litevault\",cert-authority {key}\n"),
        &key,
    );
    assert!(message.contains("line 3"), "{message}");
    for (text, why) in [
        (format!("{good}ops namespaces=litevault {key}\n"), "line 2"),
        (format!("ops unknown-option {key}\n{good}"), "line 1"),
        (
            format!("{good}\nops valid-after=\"2024-01-01\" {key}\n"),
            "line 3",
        ),
        (
            format!("{good}ops ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqn\n"),
            "line 2",
        ),
    ] {
        let message = config_error_of(&text, &key);
        assert!(message.contains(why), "{text:?}: {message}");
    }
}
