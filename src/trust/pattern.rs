//! OpenSSH's pattern lists (`match_pattern_list` in match.c), as `namespaces="..."` in an
//! allowed_signers file is matched: comma-separated patterns with `*` and `?` wildcards, each
//! possibly negated with `!`; a negated pattern that matches rules the string out, whatever
//! else matches. Matching is byte-wise and case-sensitive, as OpenSSH's is for namespaces.

/// What a pattern list makes of a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// A pattern matched and no negated one did.
    Positive,
    /// Nothing matched.
    None,
    /// A negated pattern matched: ruled out.
    Negated,
}

/// OpenSSH gives up on (and so never matches) a pattern of this many bytes or more; a list
/// holding one matches nothing, even if an earlier pattern matched.
const LONGEST_PATTERN: usize = 1023;

pub fn match_list(s: &str, list: &str) -> ListMatch {
    let mut positive = false;
    let mut rest = list.as_bytes();
    while !rest.is_empty() {
        let negated = rest[0] == b'!';
        if negated {
            rest = &rest[1..];
        }
        let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        let pattern = &rest[..end];
        if pattern.len() >= LONGEST_PATTERN {
            return ListMatch::None;
        }
        // A comma at the very end ends the list without an empty pattern after it.
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if matches(s.as_bytes(), pattern) {
            if negated {
                return ListMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Positive
    } else {
        ListMatch::None
    }
}

/// `*` matches any run of bytes (also none), `?` any one byte; everything else itself.
pub fn matches(s: &[u8], pattern: &[u8]) -> bool {
    // Iterative glob with one backtrack point: the last `*` seen and where in `s` it resumed,
    // so a long string against many stars stays linear-ish rather than exponential.
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pattern.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&p) if p == b'?' || p == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].iter().all(|&p| p == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_openssh_matches_them() {
        for (s, p, want) in [
            ("litevault", "litevault", true),
            ("litevault", "lite*", true),
            ("litevault", "*", true),
            ("litevault", "*vault", true),
            ("litevault", "l?tevault", true),
            ("litevault", "l*t*v*t", true),
            ("litevault", "litevault?", false),
            ("litevault", "Litevault", false),
            ("litevault", "lite", false),
            ("litevault", "", false),
            ("", "", true),
            ("", "*", true),
            ("", "?", false),
            ("aaa", "a*a*a*a", false),
        ] {
            assert_eq!(matches(s.as_bytes(), p.as_bytes()), want, "{s:?} vs {p:?}");
        }
    }

    #[test]
    fn a_matching_negation_rules_the_string_out_wherever_it_stands() {
        use ListMatch::*;
        for (list, want) in [
            ("litevault", Positive),
            ("git,litevault", Positive),
            ("git,lite*", Positive),
            ("git", None),
            ("git, litevault", None),
            ("", None),
            ("!git", None),
            ("!git,*", Positive),
            ("*,!litevault", Negated),
            ("!lite*,litevault", Negated),
            ("litevault,", Positive),
            (",litevault", Positive),
        ] {
            assert_eq!(match_list("litevault", list), want, "{list:?}");
        }
        let long = format!("litevault,{}", "x".repeat(LONGEST_PATTERN));
        assert_eq!(match_list("litevault", &long), None, "a too-long pattern");
    }
}
