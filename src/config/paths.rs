//! Path values in the config: `$CREDENTIALS_DIRECTORY` expanded, then made absolute against the
//! config file's folder.
//!
//! systemd's `LoadCredential=` copies each secret into a private folder that exists only while the
//! unit runs and names it in `$CREDENTIALS_DIRECTORY`, so `identity_file =
//! "$CREDENTIALS_DIRECTORY/age-identity"` finds it there. No other variable is expanded: a path
//! that names one (`$HOME/key`) is a config error rather than a file called `$HOME`, and `$$` is a
//! literal `$`. A `$` not followed by a name (`a$`, `$1`) stays as written.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The environment variables a path value may name; the README lists the same.
pub const EXPANDED: [&str; 1] = ["CREDENTIALS_DIRECTORY"];

/// (key, why): what a validation error names.
type PathError = (String, String);

/// Resolves the config's path values: its folder, and a way to read the environment (the real
/// one, or a table in tests).
pub struct Paths<'a> {
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<OsString>,
}

impl<'a> Paths<'a> {
    pub fn new(base: &'a Path, env: &'a dyn Fn(&str) -> Option<OsString>) -> Self {
        Paths { base, env }
    }

    /// The config file's folder.
    pub fn base(&self) -> &Path {
        self.base
    }

    /// The value of `key`, with its variables expanded, absolute.
    pub fn resolve(&self, key: &str, p: &Path) -> Result<PathBuf, PathError> {
        let p = match p.to_str() {
            Some(text) if text.contains('$') => PathBuf::from(expand(key, text, self.env)?),
            // TOML strings are UTF-8, so every value from the file takes the branch above.
            _ => p.to_path_buf(),
        };
        Ok(if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        })
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `text` with `$NAME` and `${NAME}` replaced, `$$` made `$`. Errors are (key, why).
fn expand(
    key: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<OsString, PathError> {
    let fail = |why: String| (key.to_string(), why);
    let mut out = OsString::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let close = braced.find('}').ok_or_else(|| {
                fail("has a ${ without its closing }; write ${CREDENTIALS_DIRECTORY}".into())
            })?;
            let name = &braced[..close];
            if !name.starts_with(is_name_start) || !name.chars().all(is_name_char) {
                return Err(fail(format!(
                    "has ${{{name}}}, which is not a variable name; write ${{CREDENTIALS_DIRECTORY}}, or $$ for a literal $"
                )));
            }
            (name, &braced[close + 1..])
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push("$");
            rest = tail;
            continue;
        } else if after.starts_with(is_name_start) {
            let end = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
            (&after[..end], &after[end..])
        } else {
            // Not a variable: `a$`, `$1`, `$-`.
            out.push("$");
            rest = after;
            continue;
        };
        if !EXPANDED.contains(&name) {
            return Err(fail(format!(
                "uses ${name}, which litevault does not expand: only ${} is (write the path, or $$ for a literal $)",
                EXPANDED.join(", $")
            )));
        }
        let value = env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            fail(format!(
                "uses ${name}, which is not set (run under systemd with LoadCredential=, or write the path)"
            ))
        })?;
        if !Path::new(&value).is_absolute() {
            return Err(fail(format!(
                "uses ${name}, which is {}, not an absolute path",
                Path::new(&value).display()
            )));
        }
        // "/run/credentials/x/" + "/age-identity": one slash between them.
        let bytes = value.as_bytes();
        let mut end = bytes.len();
        while end > 1 && bytes[end - 1] == b'/' {
            end -= 1;
        }
        out.push(OsStr::from_bytes(&bytes[..end]));
        rest = tail;
    }
    out.push(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/run/credentials/litevault-backup.service";

    fn systemd(name: &str) -> Option<OsString> {
        (name == "CREDENTIALS_DIRECTORY").then(|| DIR.into())
    }

    fn unset(_: &str) -> Option<OsString> {
        None
    }

    fn resolve_with(env: &dyn Fn(&str) -> Option<OsString>, text: &str) -> Result<PathBuf, String> {
        Paths::new(Path::new("/etc/litevault"), env)
            .resolve("encryption.identity_file", Path::new(text))
            .map_err(|(key, why)| format!("`{key}` {why}"))
    }

    #[test]
    fn credentials_directory_expands_in_both_forms() {
        for text in [
            "$CREDENTIALS_DIRECTORY/age-identity",
            "${CREDENTIALS_DIRECTORY}/age-identity",
        ] {
            assert_eq!(
                resolve_with(&systemd, text).unwrap(),
                Path::new(DIR).join("age-identity"),
                "{text}"
            );
        }
        assert_eq!(
            resolve_with(&systemd, "${CREDENTIALS_DIRECTORY}x").unwrap(),
            Path::new(&format!("{DIR}x")),
        );
        let trailing = |_: &str| Some(OsString::from("/run/creds/"));
        assert_eq!(
            resolve_with(&trailing, "$CREDENTIALS_DIRECTORY/key").unwrap(),
            Path::new("/run/creds/key")
        );
    }

    #[test]
    fn paths_without_variables_are_relative_to_the_config_folder() {
        assert_eq!(
            resolve_with(&unset, "id.txt").unwrap(),
            Path::new("/etc/litevault/id.txt")
        );
        assert_eq!(resolve_with(&unset, "/x/y").unwrap(), Path::new("/x/y"));
    }

    #[test]
    fn an_unset_or_empty_variable_names_the_key() {
        let empty = |_: &str| Some(OsString::new());
        for env in [&unset as &dyn Fn(&str) -> Option<OsString>, &empty] {
            for text in [
                "$CREDENTIALS_DIRECTORY/age-identity",
                "${CREDENTIALS_DIRECTORY}/age-identity",
            ] {
                let msg = resolve_with(env, text).unwrap_err();
                assert_eq!(
                    msg,
                    "`encryption.identity_file` uses $CREDENTIALS_DIRECTORY, which is not set \
                     (run under systemd with LoadCredential=, or write the path)"
                );
            }
        }
    }

    #[test]
    fn a_relative_value_is_refused() {
        let relative = |_: &str| Some(OsString::from("creds"));
        let msg = resolve_with(&relative, "$CREDENTIALS_DIRECTORY/key").unwrap_err();
        assert!(msg.contains("not an absolute path"), "{msg}");
    }

    #[test]
    fn other_variables_are_errors_not_literal_folders() {
        let everything = |_: &str| Some(OsString::from("/somewhere"));
        for (text, named) in [
            ("$HOME/.age/key", "$HOME"),
            ("${STATE_DIRECTORY}/key", "$STATE_DIRECTORY"),
            ("$CREDENTIALS_DIRECTORY_X/key", "$CREDENTIALS_DIRECTORY_X"),
            ("/etc/$USER", "$USER"),
        ] {
            let msg = resolve_with(&everything, text).unwrap_err();
            assert!(
                msg.contains(&format!("uses {named}, which litevault does not expand"))
                    && msg.contains("only $CREDENTIALS_DIRECTORY"),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn dollars_that_are_not_variables_stay() {
        for (text, want) in [
            ("/srv/a$$b", "/srv/a$b"),
            ("/srv/$$HOME", "/srv/$HOME"),
            ("/srv/price$", "/srv/price$"),
            ("/srv/$1/x", "/srv/$1/x"),
            ("/srv/a$-b", "/srv/a$-b"),
        ] {
            assert_eq!(
                resolve_with(&unset, text).unwrap(),
                Path::new(want),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_braces_are_errors() {
        for text in [
            "${CREDENTIALS_DIRECTORY/key",
            "${}/key",
            "${1X}/key",
            "${A-B}",
        ] {
            let msg = resolve_with(&systemd, text).unwrap_err();
            assert!(
                msg.starts_with("`encryption.identity_file` has"),
                "{text}: {msg}"
            );
        }
    }
}
