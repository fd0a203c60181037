//! Reading `WWW-Authenticate` challenges (RFC 7235) as registries send them.
//!
//! A 401 from a registry says how to authenticate: `Basic realm="..."`, or
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`
//! for the token flow. The header grammar has traps a naive `split(',')` falls into: a scope
//! list `repository:a:pull,push` carries a comma inside quotes, quoted strings have `\` escapes,
//! one header can hold several challenges (`Basic realm="x", Bearer realm="y"`), and scheme and
//! parameter names are case-insensitive. This parser is pure and total — any input gives a
//! value or an error, never a panic — so it can be fuzzed on its own.

use std::collections::BTreeMap;

/// A challenge crossdock can answer, chosen from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`: send the username and password with every request.
    Basic {
        /// The protection space, when given (informational only).
        realm: Option<String>,
    },
    /// `Bearer realm=...,service=...,scope=...`: fetch a token from `realm`.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The `service` to name in the token request.
        service: Option<String>,
        /// The scope(s) the registry wants for the refused request, space-separated as sent.
        scope: Option<String>,
        /// Why a token was refused (`invalid_token`, `insufficient_scope`), when the registry
        /// says.
        error: Option<String>,
    },
}

impl Challenge {
    /// The scheme name, lowercase: `basic` or `bearer`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Challenge::Basic { .. } => "basic",
            Challenge::Bearer { .. } => "bearer",
        }
    }

    /// The scopes the registry named, split on whitespace (RFC 6749 §3.3 scope lists).
    pub fn scopes(&self) -> Vec<&str> {
        match self {
            Challenge::Bearer { scope: Some(s), .. } => s.split_ascii_whitespace().collect(),
            _ => Vec::new(),
        }
    }
}

/// One challenge of any scheme, as written in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChallenge {
    /// Scheme, lowercased.
    pub scheme: String,
    /// `token68` credentials form, when the challenge used it instead of parameters.
    pub token68: Option<String>,
    /// Parameters, names lowercased, values unquoted and unescaped.
    pub params: BTreeMap<String, String>,
}

/// Why a `WWW-Authenticate` header could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The header breaks the RFC 7235 grammar.
    #[error("malformed header at byte {at}: {reason}")]
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// Well formed, but offers neither Basic nor Bearer.
    #[error("no Basic or Bearer challenge (offered: {offered})")]
    Unsupported {
        /// The schemes that were offered.
        offered: String,
    },
    /// A Bearer challenge without a `realm` to fetch tokens from.
    #[error("Bearer challenge without a realm")]
    MissingRealm,
}

/// Parses a `WWW-Authenticate` header and picks the challenge to answer: Bearer over Basic,
/// because a token can be scoped and cached while Basic resends the password every time.
pub fn parse_challenge(header: &str) -> Result<Challenge, ChallengeError> {
    let all = parse_challenges(header)?;
    if let Some(bearer) = all.iter().find(|c| c.scheme == "bearer") {
        let realm = bearer
            .params
            .get("realm")
            .filter(|r| !r.trim().is_empty())
            .ok_or(ChallengeError::MissingRealm)?;
        return Ok(Challenge::Bearer {
            realm: realm.trim().to_string(),
            service: bearer.params.get("service").cloned(),
            scope: bearer.params.get("scope").cloned(),
            error: bearer.params.get("error").cloned(),
        });
    }
    if let Some(basic) = all.iter().find(|c| c.scheme == "basic") {
        return Ok(Challenge::Basic {
            realm: basic.params.get("realm").cloned(),
        });
    }
    Err(ChallengeError::Unsupported {
        offered: if all.is_empty() {
            "none".to_string()
        } else {
            all.iter()
                .map(|c| c.scheme.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
    })
}

/// Parses every challenge in a `WWW-Authenticate` header:
/// `1#( auth-scheme [ 1*SP ( token68 / #auth-param ) ] )`.
pub fn parse_challenges(header: &str) -> Result<Vec<RawChallenge>, ChallengeError> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<RawChallenge> = Vec::new();
    loop {
        p.skip_list_separators();
        if p.at_end() {
            break;
        }
        let start = p.i;
        let name = p.token();
        if name.is_empty() {
            return Err(p.err("expected a scheme or parameter name"));
        }
        let after_name = p.i;
        p.skip_ws();
        if p.peek() == Some(b'=') {
            // `name = value`: a parameter of the challenge being read.
            let Some(current) = out.last_mut() else {
                return Err(ChallengeError::Syntax {
                    at: start,
                    reason: "parameter before any scheme",
                });
            };
            if current.token68.is_some() {
                return Err(ChallengeError::Syntax {
                    at: start,
                    reason: "parameter after token68",
                });
            }
            p.i += 1;
            p.skip_ws();
            let value = p.value()?;
            let key = name.to_ascii_lowercase();
            if current.params.contains_key(&key) {
                return Err(ChallengeError::Syntax {
                    at: start,
                    reason: "parameter given twice",
                });
            }
            current.params.insert(key, value);
            p.expect_separator_or_end()?;
        } else {
            // A new challenge: the scheme, maybe followed by a token68.
            p.i = after_name;
            let mut challenge = RawChallenge {
                scheme: name.to_ascii_lowercase(),
                token68: None,
                params: BTreeMap::new(),
            };
            if p.skip_ws() > 0 {
                challenge.token68 = p.token68();
            }
            // A token68 is only taken when a separator or the end follows it.
            out.push(challenge);
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn err(&self, reason: &'static str) -> ChallengeError {
        ChallengeError::Syntax { at: self.i, reason }
    }

    /// Skips optional whitespace; returns how much.
    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    /// Skips whitespace and the empty list elements RFC 7230 §7 tells recipients to accept.
    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        // tchars are ASCII, so this slice is valid UTF-8.
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`, accepted only
    /// when a list separator or the end follows; otherwise the position is left unchanged and
    /// what follows is read as parameters.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        let mut j = self.i;
        while self.s.get(j).is_some_and(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        }) {
            j += 1;
        }
        if j == start {
            return None;
        }
        while self.s.get(j) == Some(&b'=') {
            j += 1;
        }
        let mut k = j;
        while matches!(self.s.get(k), Some(b' ' | b'\t')) {
            k += 1;
        }
        if matches!(self.s.get(k), None | Some(b',')) {
            self.i = j;
            Some(String::from_utf8_lossy(&self.s[start..j]).into_owned())
        } else {
            None
        }
    }

    /// A parameter value: a quoted-string or a bare value. Bare values are read up to the next
    /// separator rather than strictly as a `token`, because some registries send unquoted URLs
    /// (`realm=https://...`), which contain `:` and `/`.
    fn value(&mut self) -> Result<String, ChallengeError> {
        if self.peek() == Some(b'"') {
            return self.quoted_string();
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b' ' | b'\t' | b'"' | b'=') || b.is_ascii_control() {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("expected a parameter value"));
        }
        self.utf8(start, self.i)
    }

    fn quoted_string(&mut self) -> Result<String, ChallengeError> {
        let open = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ChallengeError::Syntax {
                        at: open,
                        reason: "unterminated quoted string",
                    });
                }
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        // RFC 7230 `quoted-pair` escapes HTAB, SP, VCHAR and obs-text only: an
                        // escaped control character (found by fuzzing) would otherwise reach a
                        // realm URL or a scope unchecked.
                        Some(b) if b.is_ascii_control() && b != b'\t' => {
                            return Err(self.err("control character in quoted string"));
                        }
                        Some(b) => {
                            out.push(b);
                            self.i += 1;
                        }
                        None => return Err(self.err("escape at end of header")),
                    }
                }
                Some(b) if b.is_ascii_control() && b != b'\t' => {
                    return Err(self.err("control character in quoted string"));
                }
                Some(b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
        // An escaped byte may split a multi-byte character in a hostile header.
        String::from_utf8(out).map_err(|_| ChallengeError::Syntax {
            at: open,
            reason: "quoted string is not UTF-8",
        })
    }

    fn utf8(&self, start: usize, end: usize) -> Result<String, ChallengeError> {
        std::str::from_utf8(&self.s[start..end])
            .map(str::to_string)
            .map_err(|_| ChallengeError::Syntax {
                at: start,
                reason: "value is not UTF-8",
            })
    }

    fn expect_separator_or_end(&mut self) -> Result<(), ChallengeError> {
        self.skip_ws();
        match self.peek() {
            None | Some(b',') => Ok(()),
            Some(_) => Err(self.err("expected ',' or end of header")),
        }
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: None,
        }
    }

    #[test]
    fn registries_as_they_send_it() {
        let table: Vec<(&str, &str, Challenge)> = vec![
            (
                "docker hub",
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                    Some("repository:library/alpine:pull"),
                ),
            ),
            (
                "ghcr, comma inside quotes",
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull,push""#,
                bearer(
                    "https://ghcr.io/token",
                    Some("ghcr.io"),
                    Some("repository:user/image:pull,push"),
                ),
            ),
            (
                "quay-like, spaces after commas, lowercase scheme",
                r#"bearer realm="https://quay.io/v2/auth", service="quay.io""#,
                bearer("https://quay.io/v2/auth", Some("quay.io"), None),
            ),
            (
                "unquoted values and odd case",
                "BEARER Realm=https://r.example/token,Service=r.example",
                bearer("https://r.example/token", Some("r.example"), None),
            ),
            (
                "escapes in quoted string",
                r#"Bearer realm="https://a/t\"x\\y",service="s""#,
                bearer("https://a/t\"x\\y", Some("s"), None),
            ),
            (
                "distribution basic",
                r#"Basic realm="Registry Realm""#,
                Challenge::Basic {
                    realm: Some("Registry Realm".into()),
                },
            ),
            ("bare basic", "Basic", Challenge::Basic { realm: None }),
            (
                "Bearer chosen over Basic, whatever the order",
                r#"Basic realm="x", Bearer realm="https://t/token",service="svc""#,
                bearer("https://t/token", Some("svc"), None),
            ),
            (
                "unknown scheme with token68 skipped",
                r#"Negotiate abc/+def==, Basic realm="r""#,
                Challenge::Basic {
                    realm: Some("r".into()),
                },
            ),
            (
                "empty list elements and tabs",
                ",  Bearer\trealm = \"https://t\" ,, scope=\"repository:a:pull repository:b:pull\",",
                bearer(
                    "https://t",
                    None,
                    Some("repository:a:pull repository:b:pull"),
                ),
            ),
        ];
        for (name, header, want) in table {
            assert_eq!(parse_challenge(header), Ok(want), "{name}: {header}");
        }
    }

    #[test]
    fn bearer_error_and_scopes() {
        let c = parse_challenge(
            r#"Bearer realm="https://t",error="insufficient_scope",scope="repository:a:pull repository:b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme(), "bearer");
        assert_eq!(c.scopes(), ["repository:a:pull", "repository:b:pull,push"]);
        match c {
            Challenge::Bearer { error, .. } => {
                assert_eq!(error.as_deref(), Some("insufficient_scope"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_challenge_is_listed() {
        let all =
            parse_challenges(r#"Basic realm="a", Bearer realm="b",service="c", Foo"#).unwrap();
        let schemes: Vec<_> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "foo"]);
        assert_eq!(all[1].params.get("service").map(String::as_str), Some("c"));
    }

    #[test]
    fn garbage_is_an_error() {
        let table: &[(&str, ChallengeError)] = &[
            (
                "",
                ChallengeError::Unsupported {
                    offered: "none".into(),
                },
            ),
            (
                "Negotiate",
                ChallengeError::Unsupported {
                    offered: "negotiate".into(),
                },
            ),
            ("Bearer service=\"x\"", ChallengeError::MissingRealm),
            ("Bearer realm=\"\"", ChallengeError::MissingRealm),
            ("Bearer", ChallengeError::MissingRealm),
            // Grammatically a token68, so no parameters and no realm.
            ("Bearer realm=", ChallengeError::MissingRealm),
        ];
        for (header, want) in table {
            assert_eq!(parse_challenge(header).as_ref(), Err(want), "{header:?}");
        }
        for header in [
            "Bearer realm=\"https://t",
            "Bearer realm=\"x\\",
            "realm=\"x\"",
            "=",
            "Bearer service=\"x\", realm=",
            "Bearer realm=\"a\" service=\"b\"",
            "Bearer realm=\"a\",realm=\"b\"",
            "Bearer realm=\"a\x01\"",
            "\"quoted\"",
            "Bearer realm=\"a\",@",
        ] {
            assert!(
                matches!(parse_challenge(header), Err(ChallengeError::Syntax { .. })),
                "{header:?} gave {:?}",
                parse_challenge(header)
            );
        }
    }

    #[test]
    fn fuzz_escaped_control_character_is_refused() {
        for header in [
            "Bearer realm=\"https://a/t\\\u{18}x\"",
            "Bearer realm=\"https://t\",scope=\"repository:a:pull\\\r\\\nX-Injected: 1\"",
            "Basic realm=\"a\\\u{7f}\"",
        ] {
            assert!(
                matches!(parse_challenge(header), Err(ChallengeError::Syntax { .. })),
                "{header:?} gave {:?}",
                parse_challenge(header)
            );
        }
        // An escaped tab, space or visible character is still taken.
        assert_eq!(
            parse_challenge("Basic realm=\"a\\\tb\\ c\\d\""),
            Ok(Challenge::Basic {
                realm: Some("a\tb cd".into())
            })
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A deterministic sweep standing in for the fuzz target: every prefix and every
        // single-byte corruption of a real header, plus non-ASCII text.
        let base = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#;
        for end in 0..=base.len() {
            let _ = parse_challenge(&base[..end]);
        }
        for pos in 0..base.len() {
            for b in [b'"', b'\\', b',', b'=', b' ', 0u8, 0x7f] {
                let mut bytes = base.as_bytes().to_vec();
                bytes[pos] = b;
                let _ = parse_challenge(&String::from_utf8_lossy(&bytes));
            }
        }
        let _ = parse_challenge("Bearer realm=\"ü\\\u{00e9}\",sérvice=é");
    }
}
