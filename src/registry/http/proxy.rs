//! Which HTTP proxy a registry's requests go through, decided by crossdock rather than reqwest.
//!
//! reqwest would read `HTTP(S)_PROXY`/`NO_PROXY` by itself, but it proxies loopback addresses
//! too (a CI job with a corporate proxy set would send `localhost:5000` to the proxy), and it
//! cannot say afterwards which proxy a failed request went to. So the client is built with
//! reqwest's own lookup off and one [`ProxyRoute`] that answers "which proxy for this URL?" —
//! the same answer for the connection and for the error message.
//!
//! The environment is read as Go programs (docker, skopeo) read it: `HTTPS_PROXY` for `https://`
//! URLs, `HTTP_PROXY` for `http://` ones (upper case first, then lower case), `ALL_PROXY` for
//! either when the specific one is unset, `NO_PROXY` a comma list of hosts (a domain covers its
//! subdomains), IPs, CIDR blocks or `*`; `localhost` and loopback IPs are never proxied. A
//! registry's own `proxy` setting replaces all of that: a URL for every request of that registry
//! (redirects to its storage included), or none. A proxy URL may carry credentials
//! (`http://user:pass@proxy:3128`); [`ProxyUrl`] prints them as `***`.

use std::fmt;
use std::net::IpAddr;

use url::Url;

/// The environment variables read, in the order of lookup for each role.
const HTTPS_VARS: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_VARS: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const ALL_VARS: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const NO_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// A proxy's URL. `Debug` and `Display` hide its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

/// A proxy URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProxyError(String);

impl ProxyUrl {
    /// Parses `http://[user:pass@]host[:port]` (or `https://`); a bare `host:port` means
    /// `http://`, as curl and Go read it. The error never quotes the credentials.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| {
            ProxyError(format!(
                "not a proxy URL ({e}); write http://HOST:PORT or http://USER:PASSWORD@HOST:PORT"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProxyError(format!(
                "proxy scheme {}:// is not supported; use an http:// or https:// proxy",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ProxyError("the proxy URL names no host".into()));
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(ProxyError(format!(
                "a proxy URL is only scheme://[USER:PASSWORD@]HOST[:PORT], found a path in {}",
                ProxyUrl(url).redacted()
            )));
        }
        Ok(ProxyUrl(url))
    }

    /// `scheme://host:port`, credentials replaced by `***`: fit for logs and errors.
    pub fn redacted(&self) -> String {
        let mut u = self.0.clone();
        let had_credentials = !u.username().is_empty() || u.password().is_some();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let text = u.as_str().trim_end_matches('/').to_string();
        if had_credentials {
            text.replacen("://", "://***@", 1)
        } else {
            text
        }
    }

    /// The URL with its credentials, for the clients only (this registry's, and the AWS
    /// SDK's for its ECR calls): never to be printed.
    pub(crate) fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({})", self.redacted())
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Where a registry's proxy comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (the default).
    #[default]
    Environment,
    /// Connect directly, whatever the environment says (`proxy = "none"` or `""`).
    Direct,
    /// Every request of this registry through this proxy (`proxy = "http://…"`).
    Url(ProxyUrl),
}

impl ProxySetting {
    /// Reads a `proxy` setting as written: `"none"` or `""` for [`ProxySetting::Direct`],
    /// otherwise a proxy URL.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        match text.trim() {
            "" | "none" => Ok(ProxySetting::Direct),
            t => ProxyUrl::parse(t).map(ProxySetting::Url),
        }
    }
}

/// Which proxy each URL of one registry's requests goes to; shared by the client (through
/// [`ProxyRoute::reqwest_proxy`]) and by error messages.
#[derive(Clone, Debug, Default)]
pub(super) struct ProxyRoute {
    /// For `https://` URLs.
    https: Option<ProxyUrl>,
    /// For `http://` URLs.
    http: Option<ProxyUrl>,
    /// Hosts reached directly.
    no_proxy: NoProxy,
    /// From the environment: loopback hosts are then always direct.
    from_environment: bool,
}

impl ProxyRoute {
    /// The route for `setting`, reading the environment through `var` when it asks to.
    pub(super) fn resolve(
        setting: &ProxySetting,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProxyError> {
        match setting {
            ProxySetting::Direct => Ok(ProxyRoute::default()),
            ProxySetting::Url(u) => Ok(ProxyRoute {
                https: Some(u.clone()),
                http: Some(u.clone()),
                ..ProxyRoute::default()
            }),
            ProxySetting::Environment => {
                let first = |names: &[&'static str]| -> Option<(&'static str, String)> {
                    names
                        .iter()
                        .find_map(|n| var(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
                };
                let parse = |found: Option<(&'static str, String)>| match found {
                    None => Ok(None),
                    Some((name, value)) => ProxyUrl::parse(&value)
                        .map(Some)
                        .map_err(|e| ProxyError(format!("{name}: {e}"))),
                };
                let all = parse(first(&ALL_VARS))?;
                Ok(ProxyRoute {
                    https: parse(first(&HTTPS_VARS))?.or_else(|| all.clone()),
                    http: parse(first(&HTTP_VARS))?.or(all),
                    no_proxy: NoProxy::parse(&first(&NO_VARS).map(|(_, v)| v).unwrap_or_default()),
                    from_environment: true,
                })
            }
        }
    }

    /// The proxy a request to `url` goes through; `None`: directly.
    pub(super) fn for_url(&self, url: &Url) -> Option<&ProxyUrl> {
        let host = url.host_str()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if (self.from_environment && is_loopback_host(host)) || self.no_proxy.contains(host) {
            return None;
        }
        match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }
    }

    /// Whether any request could go through a proxy.
    fn is_direct(&self) -> bool {
        self.https.is_none() && self.http.is_none()
    }

    /// The reqwest proxy for this route; `None` when every request goes directly.
    pub(super) fn reqwest_proxy(&self) -> Option<reqwest::Proxy> {
        if self.is_direct() {
            return None;
        }
        let route = self.clone();
        Some(reqwest::Proxy::custom(move |url| {
            route.for_url(url).map(|p| p.url().clone())
        }))
    }
}

/// `localhost` (and its subdomains) and loopback IPs: never proxied from the environment, as
/// Go's `ProxyFromEnvironment` (docker, skopeo) does.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A `NO_PROXY` list, matched as curl and Go match it.
#[derive(Clone, Debug, Default)]
struct NoProxy {
    everything: bool,
    ips: Vec<(IpAddr, u8)>,
    domains: Vec<String>,
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut out = NoProxy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.everything = true;
                continue;
            }
            let (addr, prefix) = match entry.split_once('/') {
                Some((a, p)) => (a, p.parse::<u8>().ok()),
                None => (entry, None),
            };
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                out.ips.push((ip, prefix.unwrap_or(max).min(max)));
                continue;
            }
            // `host:port` entries: the port is not part of the match (as curl).
            let domain = entry.split(':').next().unwrap_or(entry);
            let domain = domain.trim_start_matches("*.").trim_start_matches('.');
            out.domains.push(domain.to_ascii_lowercase());
        }
        out
    }

    fn contains(&self, host: &str) -> bool {
        if self.everything {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self
                .ips
                .iter()
                .any(|(net, prefix)| in_network(ip, *net, *prefix));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            host == *d
                || host
                    .strip_suffix(d.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// Whether `ip` lies in `net/prefix`.
fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (a, b, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix.min(bits as u8));
    shift >= bits || (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn route(pairs: &[(&str, &str)]) -> ProxyRoute {
        ProxyRoute::resolve(&ProxySetting::Environment, env(pairs)).unwrap()
    }

    fn via(r: &ProxyRoute, url: &str) -> Option<String> {
        r.for_url(&Url::parse(url).unwrap()).map(|p| p.redacted())
    }

    #[test]
    fn credentials_never_print() {
        let p = ProxyUrl::parse("http://alice:hunter2@proxy.corp:3128").unwrap();
        for text in [p.to_string(), format!("{p:?}"), p.redacted()] {
            assert!(
                !text.contains("hunter2") && !text.contains("alice"),
                "{text}"
            );
            assert!(text.contains("***@proxy.corp:3128"), "{text}");
        }
        let setting = ProxySetting::parse("http://alice:hunter2@proxy.corp:3128").unwrap();
        assert!(!format!("{setting:?}").contains("hunter2"));
        // The client still gets them.
        assert_eq!(p.url().password(), Some("hunter2"));
        // A bad URL's error does not quote them either.
        let e = ProxyUrl::parse("http://alice:hunter2@proxy.corp:3128/path").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn parses_what_curl_accepts() {
        assert_eq!(
            ProxyUrl::parse("proxy:3128").unwrap().redacted(),
            "http://proxy:3128"
        );
        assert!(ProxyUrl::parse("socks5://proxy:1080").is_err());
        assert!(ProxyUrl::parse("http://").is_err());
        assert_eq!(ProxySetting::parse("none"), Ok(ProxySetting::Direct));
        assert_eq!(ProxySetting::parse(""), Ok(ProxySetting::Direct));
    }

    #[test]
    fn environment_by_scheme_with_fallbacks() {
        let r = route(&[
            ("HTTPS_PROXY", "http://secure:1"),
            ("http_proxy", "http://plain:2"),
        ]);
        assert_eq!(
            via(&r, "https://r.example/v2/").as_deref(),
            Some("http://secure:1")
        );
        assert_eq!(
            via(&r, "http://r.example/v2/").as_deref(),
            Some("http://plain:2")
        );
        let upper_wins = route(&[("HTTPS_PROXY", "http://a:1"), ("https_proxy", "http://b:1")]);
        assert_eq!(
            via(&upper_wins, "https://x.example/").as_deref(),
            Some("http://a:1")
        );
        let all = route(&[("ALL_PROXY", "http://all:3")]);
        assert_eq!(
            via(&all, "https://x.example/").as_deref(),
            Some("http://all:3")
        );
        assert_eq!(
            via(&all, "http://x.example/").as_deref(),
            Some("http://all:3")
        );
        assert_eq!(via(&route(&[]), "https://x.example/"), None);
        // A bad variable names itself.
        let e = ProxyRoute::resolve(
            &ProxySetting::Environment,
            env(&[("HTTPS_PROXY", "ftp://p:1")]),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("HTTPS_PROXY: "), "{e}");
    }

    #[test]
    fn loopback_and_no_proxy_go_direct() {
        let r = route(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("HTTP_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "corp.example, .internal, 10.0.0.0/8, 192.168.1.7, [fd00::1]",
            ),
        ]);
        for direct in [
            "http://localhost:5000/v2/",
            "https://127.0.0.1:5000/v2/",
            "https://127.1.2.3/v2/",
            "https://[::1]:5000/v2/",
            "https://registry.corp.example/v2/",
            "https://corp.example/v2/",
            "https://x.internal/v2/",
            "https://10.1.2.3/v2/",
            "https://192.168.1.7:443/v2/",
            "https://[fd00::1]/v2/",
        ] {
            assert_eq!(via(&r, direct), None, "{direct}");
        }
        for proxied in [
            "https://notcorp.example/v2/",
            "https://11.1.2.3/v2/",
            "https://192.168.1.8/v2/",
            "https://ghcr.io/v2/",
        ] {
            assert!(via(&r, proxied).is_some(), "{proxied}");
        }
        assert_eq!(
            via(
                &route(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]),
                "https://ghcr.io/"
            ),
            None
        );
    }

    #[test]
    fn an_explicit_setting_replaces_the_environment() {
        let p = ProxySetting::parse("http://p:9").unwrap();
        let r = ProxyRoute::resolve(&p, env(&[("NO_PROXY", "*")])).unwrap();
        // Even a loopback registry, when asked for by name.
        assert_eq!(
            via(&r, "https://127.0.0.1:5000/v2/").as_deref(),
            Some("http://p:9")
        );
        let direct =
            ProxyRoute::resolve(&ProxySetting::Direct, env(&[("HTTPS_PROXY", "http://p:1")]))
                .unwrap();
        assert_eq!(via(&direct, "https://ghcr.io/v2/"), None);
        assert!(direct.reqwest_proxy().is_none());
    }
}
