//! How a failed command's error reaches a person: every cause once, then what to do about it.
//!
//! Errors here follow the common Rust shape where a message may include its cause's text *and*
//! return the cause from `source()` (so that logs, which print one message, miss nothing). A
//! chain printer that joins every level would then say each cause two or three times; this one
//! leaves out a cause whose text is already said. Then, for the failures a new user meets first
//! (nothing listening, a name that does not resolve, TLS against a plain-HTTP registry, missing
//! credentials, a tag that does not exist), one `hint:` line says what to check or run.

use crate::registry::auth::cloud::CloudError;
use crate::registry::{ErrorKind, RegistryError};

/// The text printed for a failed command: `error: …` with each cause once, and a `hint: …`
/// line when one applies.
pub fn render(e: &anyhow::Error) -> String {
    let text = chain_once(e.chain());
    // The engine keeps transport errors boxed, and a `Box<E>` source is its own type.
    let registry_error = e.chain().find_map(|c| {
        c.downcast_ref::<RegistryError>()
            .or_else(|| c.downcast_ref::<Box<RegistryError>>().map(|b| &**b))
    });
    let cloud = e.chain().find_map(|c| c.downcast_ref::<CloudError>());
    if let Some(c) = cloud {
        return format!("error: {text}\nhint: {}", cloud_hint(c));
    }
    match registry_error {
        Some(r) => match hint(r, &text) {
            Some(h) => format!("error: {text}\nhint: {h}"),
            None => format!("error: {text}"),
        },
        None => format!("error: {text}"),
    }
}

/// The messages of a cause chain joined by `: `, leaving out each one already said.
pub fn chain_once<'a>(
    chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut text = String::new();
    for cause in chain {
        let msg = cause.to_string();
        if msg.is_empty() || text.contains(&msg) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&msg);
    }
    text
}

/// What a request was about, read back from its URL: `HOST`, the repository, and the manifest
/// reference (tag or digest) when it was a manifest request.
struct Target<'a> {
    host: &'a str,
    repository: Option<&'a str>,
    reference: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn of(url: &'a str) -> Option<Self> {
        let (_, rest) = url.split_once("://")?;
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.strip_prefix("v2/").unwrap_or("");
        let (repository, reference) = if let Some((repo, r)) = path.rsplit_once("/manifests/") {
            (Some(repo), Some(r))
        } else if let Some((repo, _)) = path.rsplit_once("/tags/list") {
            (Some(repo), None)
        } else if let Some((repo, _)) = path.rsplit_once("/blobs/") {
            (Some(repo), None)
        } else {
            (None, None)
        };
        Some(Target {
            host,
            repository: repository.filter(|r| !r.is_empty()),
            reference,
        })
    }
}

/// For a registry whose credentials come from a cloud identity: logins and flags do not
/// apply; the identity does (the error's reason says what failed).
fn cloud_hint(c: &CloudError) -> String {
    format!(
        "{} uses {} auth: its credentials come from {}, not from `crossdock login` or \
         --src-creds/--dest-creds; fix what the error says there (README, \"Cloud registries\")",
        c.registry, c.cloud, c.source_name
    )
}

fn hint(e: &RegistryError, text: &str) -> Option<String> {
    let t = Target::of(&e.url)?;
    let host = t.host;
    let lower = text.to_ascii_lowercase();
    match e.kind {
        ErrorKind::Transport if lower.contains("dns error") || lower.contains("lookup address") => {
            Some(format!(
                "the host name in {host} does not resolve: check its spelling (and the DNS or \
                 proxy settings of this machine)"
            ))
        }
        ErrorKind::Transport if lower.contains("connection refused") => {
            let http = if crate::reference::is_loopback_registry(host) {
                String::new()
            } else {
                format!(" If it speaks plain HTTP, pass --insecure-registry {host}.")
            };
            Some(format!(
                "nothing accepts connections at {host}: is the registry running, and is {host} \
                 its host:port?{http}"
            ))
        }
        ErrorKind::Transport
            if lower.contains("certificate")
                || lower.contains("tls")
                || lower.contains("corrupt message") =>
        {
            Some(format!(
                "the HTTPS connection to {host} failed: if it speaks plain HTTP, pass \
                 --insecure-registry {host}; if its certificate is from a private CA, set \
                 ca_file under [registries.\"{host}\"] in the configuration"
            ))
        }
        ErrorKind::Unauthorized | ErrorKind::Denied => Some(format!(
            "{host} refused the credentials (or their absence): run `crossdock login {host}`, \
             pass --src-creds/--dest-creds, or for the daemon give the credentials under \
             [registries.\"{host}\"] (username with password_file or password_env)"
        )),
        ErrorKind::NotFound => {
            let repo = format!("{host}/{}", t.repository?);
            match t.reference {
                Some(tag) if !tag.contains(':') => Some(format!(
                    "the tag {tag} does not exist in {repo}: `crossdock ls {repo}` lists its tags"
                )),
                Some(_) => Some(format!(
                    "no manifest with that digest in {repo}: `crossdock ls --digests {repo}` lists \
                     what its tags point at"
                )),
                None if e.operation.contains("tags") => Some(format!(
                    "the repository {repo} does not exist (or these credentials may not see it)"
                )),
                None => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_cause_already_said_is_left_out() {
        let inner = E("refused", None);
        let mid = E("GET x: refused", Some(Box::new(inner)));
        let top = E("reading x: GET x: refused", Some(Box::new(mid)));
        let e = anyhow::Error::new(top).context("importing x");
        assert_eq!(render(&e), "error: importing x: reading x: GET x: refused");
    }

    #[test]
    fn dns_and_tls_failures_get_their_hints() {
        let e = RegistryError::new(
            ErrorKind::Transport,
            "GET manifest",
            "https://nowhere.invalid/v2/x/manifests/1",
        )
        .with_message("error sending request: dns error: failed to lookup address information");
        let text = render(&anyhow::Error::new(e));
        assert!(text.ends_with("\nhint: the host name in nowhere.invalid does not resolve: check its spelling (and the DNS or proxy settings of this machine)"), "{text}");
        let e = RegistryError::new(
            ErrorKind::Transport,
            "GET manifest",
            "https://reg.example:5000/v2/x/manifests/1",
        )
        .with_message("error sending request: received corrupt message of type InvalidContentType");
        let text = render(&anyhow::Error::new(e));
        assert!(text.contains("\nhint: the HTTPS connection to reg.example:5000 failed: if it speaks plain HTTP, pass --insecure-registry reg.example:5000"), "{text}");
    }

    #[test]
    fn targets_read_back_from_urls() {
        let t = Target::of("http://localhost:5000/v2/a/b/manifests/v1").unwrap();
        assert_eq!(
            (t.host, t.repository, t.reference),
            ("localhost:5000", Some("a/b"), Some("v1"))
        );
        let t = Target::of("https://r.example/v2/a/tags/list?n=100").unwrap();
        assert_eq!(
            (t.host, t.repository, t.reference),
            ("r.example", Some("a"), None)
        );
        assert!(Target::of("/tmp/layout/index.json").is_none());
    }
}
