//! One line of OpenSSH's `allowed_signers` format, split as `ssh-keygen -Y verify` splits it
//! (sshsig.c, `parse_principals_key_and_options`): `principals [options] keytype base64 [comment]`.
//!
//! Where OpenSSH logs a bad line and skips it, litevault refuses the file: a signer that
//! silently drops out is a typo nobody sees, and a line is either understood whole or not
//! used. Reasons never quote the line, which may hold key material.

use ssh_key::PublicKey;

use super::timestamp;

/// What one key line says.
#[derive(Debug, Clone)]
pub struct Line {
    /// The principals pattern list. litevault does not match it (any principal will do, as for
    /// `ssh-keygen -Y find-principals`); it only names the line in a verdict.
    pub principals: String,
    pub key: PublicKey,
    pub options: LineOptions,
}

/// The options OpenSSH knows for allowed_signers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineOptions {
    pub cert_authority: bool,
    /// `namespaces="..."`, a pattern list (see [`super::pattern`]).
    pub namespaces: Option<String>,
    /// Seconds since the epoch; the key is valid at or after it.
    pub valid_after: Option<i64>,
    /// Seconds since the epoch; the key is valid at or before it.
    pub valid_before: Option<i64>,
}

/// A line: `None` for a blank line or a comment.
pub fn parse(line: &str) -> Result<Option<Line>, String> {
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = principals(rest)?;
    let (options, key) = match key(rest) {
        Some(key) => (LineOptions::default(), key),
        // A key type where the key should be is a broken key, never an option.
        None if known_algorithm(first_field(rest)) => return Err(not_a_key(rest)),
        None => {
            let (options, after) = split_options(rest)?;
            let after = after.trim_start_matches([' ', '\t']);
            if after.is_empty() {
                return Err("no key after the options".into());
            }
            // OpenSSH reads the key before the options: a missing key is the first complaint.
            let key = key(after).ok_or_else(|| not_a_key(after))?;
            (parse_options(options)?, key)
        }
    };
    Ok(Some(Line {
        principals,
        key,
        options,
    }))
}

const EXPECTED: &str = "expected \"principals [options] keytype base64-key [comment]\"";

/// The first field, as OpenSSH's `strdelimw` reads it: up to whitespace, or with one quoted
/// stretch (which may hold spaces and commas) that ends the field where its quote closes.
fn principals(line: &str) -> Result<(String, &str), String> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let Some(at) = line.find(|c: char| is_space(c) || c == '"') else {
        return Err(EXPECTED.into());
    };
    if line[at..].starts_with('"') {
        let quoted = &line[at + 1..];
        let close = quoted
            .find('"')
            .ok_or("the principals field opens a quote it never closes")?;
        let field = format!("{}{}", &line[..at], &quoted[..close]);
        return Ok((field, quoted[close + 1..].trim_start_matches(is_space)));
    }
    Ok((
        line[..at].to_string(),
        line[at..].trim_start_matches(is_space),
    ))
}

/// A key at the start of `text` (`keytype base64 ...`), if there is one. OpenSSH tries this
/// first and takes the field for options only when it is not a key.
fn key(text: &str) -> Option<PublicKey> {
    let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
    let (algorithm, blob) = (fields.next()?, fields.next()?);
    let blob = blob.trim_end_matches(['\r', '\n']);
    let key = PublicKey::from_openssh(&format!("{algorithm} {blob}")).ok()?;
    (key.algorithm().as_str() == algorithm).then_some(key)
}

fn first_field(text: &str) -> &str {
    text.split([' ', '\t']).next().unwrap_or_default()
}

/// A key type OpenSSH and ssh-key both name (not any `name@domain`, which could be an option).
fn known_algorithm(field: &str) -> bool {
    ssh_key::Algorithm::new(field).is_ok_and(|a| !matches!(a, ssh_key::Algorithm::Other(_)))
}

fn not_a_key(text: &str) -> String {
    let first = first_field(text);
    if known_algorithm(first) {
        format!("the {first} key does not decode (is it cut short?)")
    } else {
        "no OpenSSH public key where the key should be".into()
    }
}

/// The options field and what follows it: up to the first space or tab outside double quotes,
/// where `\"` never opens or closes a quote (`sshkey_advance_past_options`).
fn split_options(text: &str) -> Result<(&str, &str), String> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() && (quoted || (bytes[i] != b' ' && bytes[i] != b'\t')) {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if bytes[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if quoted {
        return Err("the options open a quote they never close".into());
    }
    Ok(text.split_at(i.min(text.len())))
}

/// The comma-separated options, as sshsig.c's `sshsigopt_parse`: keywords in any case, values
/// always in double quotes (where `\"` is a quote), each keyword at most once, anything else
/// (an unknown option, a stray or trailing comma) makes the line invalid.
pub fn parse_options(field: &str) -> Result<LineOptions, String> {
    let mut options = LineOptions::default();
    let mut rest = field;
    while !rest.is_empty() {
        if let Some(after) = strip_keyword(rest, "cert-authority") {
            options.cert_authority = true;
            rest = after;
        } else if let Some(after) = strip_keyword(rest, "namespaces=") {
            let (value, after) = dequote(after, "namespaces")?;
            if options.namespaces.replace(value).is_some() {
                return Err("namespaces is given twice".into());
            }
            rest = after;
        } else if let Some(after) = strip_keyword(rest, "valid-after=") {
            rest = time_option(after, "valid-after", &mut options.valid_after)?;
        } else if let Some(after) = strip_keyword(rest, "valid-before=") {
            rest = time_option(after, "valid-before", &mut options.valid_before)?;
        }
        if rest.is_empty() {
            break;
        }
        // Whatever a known option did not consume is an option OpenSSH does not know.
        rest = rest.strip_prefix(',').ok_or_else(unknown_option)?;
        if rest.is_empty() {
            return Err("the options end with a comma".into());
        }
    }
    if let (Some(after), Some(before)) = (options.valid_after, options.valid_before) {
        if before <= after {
            return Err("valid-before is not later than valid-after".into());
        }
    }
    Ok(options)
}

fn unknown_option() -> String {
    "an option OpenSSH does not know (allowed_signers takes cert-authority, namespaces=\"...\", valid-after=\"...\" and valid-before=\"...\", separated by commas without spaces)".into()
}

/// `keyword` at the start of `text`, in any case.
fn strip_keyword<'t>(text: &'t str, keyword: &str) -> Option<&'t str> {
    let head = text.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &text[keyword.len()..])
}

/// A double-quoted value and what follows its closing quote.
fn dequote<'t>(text: &'t str, name: &str) -> Result<(String, &'t str), String> {
    let inner = text
        .strip_prefix('"')
        .ok_or_else(|| format!("the value of {name} must be in double quotes"))?;
    let mut value = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &inner[i + 1..])),
            '\\' if inner[i + 1..].starts_with('"') => {
                chars.next();
                value.push('"');
            }
            c => value.push(c),
        }
    }
    Err(format!("the value of {name} has no closing quote"))
}

fn time_option<'t>(text: &'t str, name: &str, slot: &mut Option<i64>) -> Result<&'t str, String> {
    if slot.is_some() {
        return Err(format!("{name} is given twice"));
    }
    let (value, rest) = dequote(text, name)?;
    let t = timestamp::parse(&value).map_err(|why| format!("{name} {why}"))?;
    *slot = Some(t);
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn line(text: &str) -> Line {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .expect("a key line")
    }

    fn refused(text: &str) -> String {
        match parse(text) {
            Err(why) => {
                assert!(!why.contains("AAAAC3"), "quotes key material: {why}");
                why
            }
            Ok(got) => panic!("accepted {text:?}: {got:?}"),
        }
    }

    #[test]
    fn comments_and_blank_lines_hold_nothing() {
        for text in [
            "",
            "   ",
            "\t",
            "# a comment",
            "   # indented",
            "#ops@x ssh-ed25519 AAAA",
        ] {
            assert!(parse(text).unwrap().is_none(), "{text:?}");
        }
    }

    #[test]
    fn quoted_option_values_keep_their_commas_spaces_and_escaped_quotes() {
        let l = line(&format!(
            "ops@example.com namespaces=\"git,litevault\" {KEY}"
        ));
        assert_eq!(l.options.namespaces.as_deref(), Some("git,litevault"));
        assert_eq!(l.principals, "ops@example.com");
        let l = line(&format!(
            "ops namespaces=\"a b,litevault\",valid-after=\"20240101Z\" {KEY} a comment"
        ));
        assert_eq!(l.options.namespaces.as_deref(), Some("a b,litevault"));
        assert_eq!(l.options.valid_after, Some(1_704_067_200));
        let l = line(&format!(
            "ops namespaces=\"say \\\"hi\\\",litevault\" {KEY}"
        ));
        assert_eq!(
            l.options.namespaces.as_deref(),
            Some("say \"hi\",litevault")
        );
        let l = line(&format!(
            "ops NameSpaces=\"litevault\",VALID-BEFORE=\"20990101\",Cert-Authority {KEY}"
        ));
        assert_eq!(l.options.namespaces.as_deref(), Some("litevault"));
        assert!(l.options.cert_authority);
        assert!(l.options.valid_before.is_some());
        let l = line(&format!("ops\tnamespaces=\"litevault\"\t{KEY}"));
        assert_eq!(l.options.namespaces.as_deref(), Some("litevault"));
        // OpenSSH steps over an empty option between two commas (and a leading comma).
        let l = line(&format!(
            "ops ,namespaces=\"litevault\",,cert-authority {KEY}"
        ));
        assert_eq!(l.options.namespaces.as_deref(), Some("litevault"));
        assert!(l.options.cert_authority);
    }

    #[test]
    fn the_principals_field_may_be_a_list_or_quoted() {
        let l = line(&format!("a@x,b@y,*@backup.example {KEY}"));
        assert_eq!(l.principals, "a@x,b@y,*@backup.example");
        assert_eq!(l.options, LineOptions::default());
        let l = line(&format!(
            "\"odd name,ops@x\" namespaces=\"litevault\" {KEY}"
        ));
        assert_eq!(l.principals, "odd name,ops@x");
        assert_eq!(l.options.namespaces.as_deref(), Some("litevault"));
        let l = line(&format!("pre\"fix x\" {KEY}"));
        assert_eq!(l.principals, "prefix x");
        let l = line(&format!("   ops {KEY}"));
        assert_eq!(l.principals, "ops");
    }

    #[test]
    fn a_line_openssh_would_skip_is_refused_with_a_reason() {
        let cases = [
            ("ops", "expected"),
            (&format!("ops namespaces=litevault {KEY}"), "double quotes"),
            (&format!("ops namespaces=\"litevault {KEY}"), "never close"),
            (&format!("\"ops {KEY}"), "never closes"),
            (
                &format!("ops namespaces=\"litevault\", {KEY}"),
                "end with a comma",
            ),
            (&format!("ops no-touch-required {KEY}"), "does not know"),
            (&format!("ops namespaces=\"a\"x {KEY}"), "does not know"),
            (&format!("ops cert-authorityx {KEY}"), "does not know"),
            (&format!("ops namespaces {KEY}"), "does not know"),
            (
                &format!("ops namespaces=\"a\",namespaces=\"b\" {KEY}"),
                "twice",
            ),
            (
                &format!("ops valid-after=\"20240101\",valid-after=\"20240102\" {KEY}"),
                "twice",
            ),
            (
                &format!("ops valid-after=\"2024\" {KEY}"),
                "valid-after is not a time",
            ),
            (
                &format!("ops valid-before=\"20241301Z\" {KEY}"),
                "valid-before is not a time",
            ),
            (
                &format!("ops valid-after=\"20250101Z\",valid-before=\"20240101Z\" {KEY}"),
                "not later",
            ),
            (
                &format!("ops valid-after=\"20240101Z\",valid-before=\"20240101Z\" {KEY}"),
                "not later",
            ),
            ("ops namespaces=\"litevault\"", "no key"),
            (
                "ops ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6",
                "does not decode",
            ),
            ("ops ssh-ed25519", "does not decode"),
            (&format!("ops {}", &KEY[12..]), "no key after the options"),
            (
                &format!("ops {} comment", &KEY[12..]),
                "no OpenSSH public key",
            ),
            (
                &format!("ops ssh-rsa {}", KEY.split(' ').nth(1).unwrap()),
                "the ssh-rsa key does not decode",
            ),
        ];
        for (text, why) in cases {
            let got = refused(text);
            assert!(got.contains(why), "{text:?}: {got:?} lacks {why:?}");
        }
    }
}
