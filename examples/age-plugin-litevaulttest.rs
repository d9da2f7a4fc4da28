//! `age-plugin-litevaulttest`: a software stand-in for a hardware key, for litevault's tests
//! (`tests/it/plugin.rs`). It speaks the real age plugin protocol, through the `age-plugin`
//! crate, and holds an ordinary X25519 key; its stanzas carry the tag `litevaulttest`, so a
//! backup made for it opens only through this binary, as one made for a YubiKey opens only
//! through `age-plugin-yubikey`.
//!
//! ```text
//! age-plugin-litevaulttest --generate
//!     prints a new identity file on stdout:
//!         # created: 2025-01-01T00:00:00+00:00
//!         # recipient: age1litevaulttest1...
//!         AGE-PLUGIN-LITEVAULTTEST-1...
//!     The recipient is the bech32 of the X25519 public key under the HRP `age1litevaulttest`;
//!     the identity the bech32 of the secret key under `AGE-PLUGIN-LITEVAULTTEST-`.
//! age-plugin-litevaulttest --age-plugin=recipient-v1 | --age-plugin=identity-v1
//!     the plugin state machines, started by an age client (litevault, age, rage).
//! ```
//!
//! Like a hardware key's policies, the environment changes how it unwraps a file key:
//!
//! - `LITEVAULT_TEST_PLUGIN_PIN=1`: first ask for a PIN (`request-secret`); declined, it fails
//!   with "a PIN is required" and unwraps nothing. Any PIN given is accepted.
//! - `LITEVAULT_TEST_PLUGIN_TOUCH=1`: first show "Touch your litevault test key" (`msg`), then
//!   unwrap.
//! - `LITEVAULT_TEST_PLUGIN_HANG=1`: never answer, when wrapping as when unwrapping; wait until
//!   the client closes the pipe (so the plugin ends with the client that gave up on it).
//!
//! `cargo test --all-targets` (and `cargo build --examples`) builds it into
//! `$CARGO_TARGET_DIR/debug/examples/`; an age client finds it on PATH under its own name.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use age_plugin::{identity, print_new_identity, recipient, run_state_machine, PluginHandler};
use bech32::{Bech32, Hrp};

const NAME: &str = "litevaulttest";
/// The tag of this plugin's stanzas (an X25519 stanza, renamed).
const TAG: &str = "litevaulttest";
const X25519_TAG: &str = "X25519";

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `LITEVAULT_TEST_PLUGIN_HANG`: a key waiting for a touch nobody gives. No answer until the
/// client goes away.
fn hang_if_asked() {
    if flag("LITEVAULT_TEST_PLUGIN_HANG") {
        let _ = io::stdin().lock().read_to_end(&mut Vec::new());
        std::process::exit(1);
    }
}

fn x25519_recipient(key: &[u8]) -> Option<age::x25519::Recipient> {
    let text = bech32::encode::<Bech32>(Hrp::parse("age").ok()?, key).ok()?;
    age::x25519::Recipient::from_str(&text).ok()
}

fn x25519_identity(key: &[u8]) -> Option<age::x25519::Identity> {
    let text = bech32::encode::<Bech32>(Hrp::parse("age-secret-key-").ok()?, key).ok()?;
    age::x25519::Identity::from_str(&text.to_uppercase()).ok()
}

fn key_bytes(bech: &str) -> Vec<u8> {
    bech32::decode(bech).expect("age writes valid bech32").1
}

fn generate() {
    let identity = age::x25519::Identity::generate();
    let secret = key_bytes(identity.to_string().expose_secret());
    let public = key_bytes(&identity.to_public().to_string());
    print_new_identity(NAME, &secret, &public);
}

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = Recipients;
    type IdentityV1 = Identities;

    fn recipient_v1(self) -> io::Result<Recipients> {
        Ok(Recipients(Vec::new()))
    }

    fn identity_v1(self) -> io::Result<Identities> {
        Ok(Identities(Vec::new()))
    }
}

/// recipient-v1: wrap file keys to the X25519 keys behind the recipients (and identities).
struct Recipients(Vec<age::x25519::Recipient>);

impl recipient::RecipientPluginV1 for Recipients {
    fn add_recipient(
        &mut self,
        index: usize,
        plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        match x25519_recipient(bytes).filter(|_| plugin_name == NAME) {
            Some(r) => {
                self.0.push(r);
                Ok(())
            }
            None => Err(recipient::Error::Recipient {
                index,
                message: "not a litevaulttest recipient".to_string(),
            }),
        }
    }

    fn add_identity(
        &mut self,
        index: usize,
        plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        match x25519_identity(bytes).filter(|_| plugin_name == NAME) {
            Some(i) => {
                self.0.push(i.to_public());
                Ok(())
            }
            None => Err(recipient::Error::Identity {
                index,
                message: "not a litevaulttest identity".to_string(),
            }),
        }
    }

    fn labels(&mut self) -> HashSet<String> {
        // No constraints: may be mixed with ordinary age recipients, like a YubiKey's.
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _callbacks: impl age_plugin::Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        hang_if_asked();
        let mut files = Vec::new();
        for file_key in &file_keys {
            let mut stanzas = Vec::new();
            for r in &self.0 {
                let (wrapped, _) = age::Recipient::wrap_file_key(r, file_key)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                stanzas.extend(wrapped.into_iter().map(|mut s| {
                    s.tag = TAG.to_string();
                    s
                }));
            }
            files.push(stanzas);
        }
        Ok(Ok(files))
    }
}

/// identity-v1: unwrap this plugin's stanzas with the X25519 keys behind the identities.
struct Identities(Vec<age::x25519::Identity>);

impl identity::IdentityPluginV1 for Identities {
    fn add_identity(
        &mut self,
        index: usize,
        plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), identity::Error> {
        match x25519_identity(bytes).filter(|_| plugin_name == NAME) {
            Some(i) => {
                self.0.push(i);
                Ok(())
            }
            None => Err(identity::Error::Identity {
                index,
                message: "not a litevaulttest identity".to_string(),
            }),
        }
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        mut callbacks: impl age_plugin::Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        let mut keys = HashMap::new();
        // Only files with a stanza of ours concern this key; others are not its business.
        let ours: Vec<usize> = (0..files.len())
            .filter(|&i| files[i].iter().any(|s| s.tag == TAG))
            .collect();
        if ours.is_empty() {
            return Ok(keys);
        }
        hang_if_asked();
        if flag("LITEVAULT_TEST_PLUGIN_TOUCH") {
            let _ = callbacks.message("Touch your litevault test key")?;
        }
        if flag("LITEVAULT_TEST_PLUGIN_PIN") {
            let pin = callbacks.request_secret("Enter the PIN of the litevault test key")?;
            if pin.is_err() {
                for i in ours {
                    keys.insert(
                        i,
                        Err(vec![identity::Error::Identity {
                            index: 0,
                            message: "a PIN is required".to_string(),
                        }]),
                    );
                }
                return Ok(keys);
            }
        }
        for i in ours {
            for stanza in files[i].iter().filter(|s| s.tag == TAG) {
                let x25519 = Stanza {
                    tag: X25519_TAG.to_string(),
                    args: stanza.args.clone(),
                    body: stanza.body.clone(),
                };
                let found = self
                    .0
                    .iter()
                    .find_map(|id| age::Identity::unwrap_stanza(id, &x25519));
                if let Some(Ok(key)) = found {
                    keys.insert(i, Ok(key));
                    break;
                }
            }
        }
        Ok(keys)
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut state_machine = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--generate" {
            generate();
            return Ok(());
        } else if let Some(sm) = arg.strip_prefix("--age-plugin=") {
            state_machine = Some(sm.to_string());
        } else if arg == "--age-plugin" {
            state_machine = it.next().cloned();
        } else {
            eprintln!("usage: age-plugin-litevaulttest --generate | --age-plugin=STATE_MACHINE");
            std::process::exit(2);
        }
    }
    match state_machine {
        Some(sm) => run_state_machine(&sm, Handler),
        None => {
            eprintln!("usage: age-plugin-litevaulttest --generate | --age-plugin=STATE_MACHINE");
            std::process::exit(2);
        }
    }
}
