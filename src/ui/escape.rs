//! Escaping of text for a person's terminal: the one rule for what may reach it.
//!
//! Ids, names, paths, host names, origins and error messages come from destinations, sidecars,
//! manifests, archives and the command line, all of which someone else may have written. A
//! terminal obeys the control characters in what it is given (retitle the window, clear the
//! screen, move the cursor, hide text), and a raw newline makes a line of its own; so none of
//! them is ever written: each is shown visibly instead, as `\n`, `\x1b` or `\u{202e}`.
//!
//! Escaped are: every C0 control (including ESC, CR, LF and TAB), DEL, the C1 range
//! U+0080..U+009F, the bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E,
//! U+2066..U+2069) that reorder what is shown, and the line and paragraph separators
//! U+2028/U+2029. Everything else, other scripts and emoji included, is kept.
//!
//! A backslash is kept as it is, so that escaping is idempotent (`escape(escape(s)) ==
//! escape(s)`): a field escaped where a line is built passes unchanged through the writer, which
//! escapes every line again (see [`super::Ui`]). The price is that a name written literally as
//! `\x1b` reads the same as an escaped ESC; it is still four harmless characters.
//!
//! `--json` output keeps its data exact: serde_json escapes C0 controls itself, and
//! [`JsonFormatter`] adds the rest of the list above as `\uXXXX` escapes, which every JSON
//! parser reads back as the same characters, so a document piped to a terminal is as harmless.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

use serde_json::ser::{Formatter, PrettyFormatter};

/// True for a character that is never written to a terminal as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every unsafe character shown visibly; borrowed when there is none (the usual case).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

fn push(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if (c as u32) < 0x80 && is_unsafe(c) => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// A field for a line of human text: `format!("backup {} on {}", Escaped(&id), Escaped(&dest))`.
/// Width and alignment (`{:<22}`) apply to the escaped form, as it is shown.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

/// serde_json's pretty printer, with DEL, C1 controls and the bidirectional controls inside
/// strings written as `\uXXXX` (serde_json already escapes C0 controls, quotes and backslashes).
#[derive(Default)]
pub struct JsonFormatter(PrettyFormatter<'static>);

impl Formatter for JsonFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_unsafe(c)) {
            w.write_all(&rest.as_bytes()[..at])?;
            // Every unsafe character is in the Basic Multilingual Plane: one \u escape.
            write!(w, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// `doc` as pretty JSON through [`JsonFormatter`].
pub fn write_json<W: io::Write, T: serde::Serialize + ?Sized>(w: W, doc: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, JsonFormatter::default());
    doc.serialize(&mut ser).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_are_shown_not_emitted() {
        let table: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("", ""),
            ("étoile ☃ 日本 🙂", "étoile ☃ 日本 🙂"),
            ("back\\slash", "back\\slash"),
            ("a\nb", "a\\nb"),
            ("a\r\nb", "a\\r\\nb"),
            ("a\tb", "a\\tb"),
            ("nul\0", "nul\\0"),
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
            ("\x1b[2J", "\\x1b[2J"),
            ("\x08\x0b\x0c\x1f", "\\x08\\x0b\\x0c\\x1f"),
            ("del\x7f", "del\\x7f"),
            ("c1 \u{85}\u{9b}2J\u{9f}", "c1 \\u{85}\\u{9b}2J\\u{9f}"),
            ("\u{a0}nbsp kept", "\u{a0}nbsp kept"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}"),
        ];
        for (input, want) in table {
            assert_eq!(escape(input), *want, "escape({input:?})");
            assert_eq!(Escaped(input).to_string(), *want, "Escaped({input:?})");
            assert!(
                !escape(input).chars().any(is_unsafe),
                "escape({input:?}) still holds an unsafe character"
            );
            assert_eq!(escape(&escape(input)), escape(input), "twice: {input:?}");
        }
    }

    #[test]
    fn json_strings_keep_their_data_and_lose_their_controls() {
        let value = serde_json::json!({
            "origin": "\x1b]0;pwned\x07 \u{9b}2J \u{202e}txt \x7f\nnext é ☃ \\ \"q\"",
            "list": [1, "two"],
        });
        let mut out = Vec::new();
        write_json(&mut out, &value).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{text:?}");
        for escaped in ["\\u001b", "\\u0007", "\\u009b", "\\u202e", "\\u007f", "\\n"] {
            assert!(text.contains(escaped), "{escaped} missing from {text}");
        }
        assert!(text.contains("é ☃"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        // The same layout as serde_json's own pretty printer.
        assert_eq!(
            {
                let mut out = Vec::new();
                write_json(
                    &mut out,
                    &serde_json::json!({"a": [1, {"b": "c"}], "d": {}}),
                )
                .unwrap();
                String::from_utf8(out).unwrap()
            },
            serde_json::to_string_pretty(&serde_json::json!({"a": [1, {"b": "c"}], "d": {}}))
                .unwrap()
        );
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(escape("20260101T000000Z-ab12"), Cow::Borrowed(_)));
        assert!(matches!(escape("a\x1bb"), Cow::Owned(_)));
    }

    #[test]
    fn width_applies_to_what_is_shown() {
        assert_eq!(format!("[{:<6}]", Escaped("a\nb")), "[a\\nb  ]");
        assert_eq!(format!("[{:>4}]", Escaped("x")), "[   x]");
    }
}
