//! Credentials from Docker's `config.json`, as `docker login` leaves them.
//!
//! Operators already have their registry logins there, so crossdock reads them rather than
//! asking for the same secrets twice. What docker does, crossdock does, in docker's order:
//! 1. `credHelpers[registry]`: run `docker-credential-<name> get`;
//! 2. `credsStore`: the default helper for every registry; when it has nothing for this
//!    registry, fall back to the file's own entry (docker's native store does the same);
//! 3. `auths[registry]`: `identitytoken`, then `registrytoken`, then `username`/`password`, then
//!    `auth` (base64 of `user:password`).
//!
//! Keys in `auths` and `credHelpers` are written in several ways (`https://ghcr.io`, `ghcr.io`,
//! `https://index.docker.io/v1/` for Docker Hub), so both sides are reduced to a host before
//! comparing, with Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`, `docker.io`)
//! all meaning `docker.io`.
//!
//! A helper speaks a tiny protocol: the server URL on stdin, `{"Username","Secret"}` JSON on
//! stdout, and a Username of `<token>` means the Secret is an identity token. Helpers are
//! looked up on `PATH` or, for tests and locked-down deployments, in explicit directories.
//! Everything here is blocking (a file read, maybe a child process): call it at start-up or
//! from `spawn_blocking`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::{AuthError, Credentials, Secret};
use crate::reference::DOCKER_HUB;

/// The key `docker login` writes for Docker Hub, and the server URL helpers know it by.
const DOCKER_HUB_INDEX: &str = "https://index.docker.io/v1/";

/// How long a credential helper may take (a keychain prompt that nobody answers must not hang
/// the daemon's start-up forever).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The Username a helper returns when its Secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// A loaded Docker `config.json`. Debug shows the registries it knows, never their secrets.
pub struct DockerConfig {
    path: PathBuf,
    file: ConfigFile,
    helper_dirs: Option<Vec<PathBuf>>,
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &self.file.auths.keys().collect::<Vec<_>>())
            .field("cred_helpers", &self.file.cred_helpers)
            .field("creds_store", &self.file.creds_store)
            .finish()
    }
}

/// The parts of `config.json` crossdock reads; everything else in it is ignored.
#[derive(Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry. Holds secrets in the clear, so it has no Debug.
#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// What a credential helper prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Credentials for `registry` from Docker's config file: `path`, or by default
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. `Ok(None)` when the default
/// file does not exist or has nothing for this registry; an explicit `path` that cannot be read
/// is an error. Blocking.
pub fn credentials_from_docker_config(
    path: Option<&Path>,
    registry: &str,
) -> Result<Option<Credentials>, AuthError> {
    let config = match path {
        Some(p) => DockerConfig::load(p)?,
        None => match DockerConfig::default_path() {
            Some(p) if p.exists() => DockerConfig::load(&p)?,
            _ => return Ok(None),
        },
    };
    config.credentials(registry)
}

impl DockerConfig {
    /// Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|e| AuthError::DockerConfig {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_slice(path, &bytes)
    }

    /// Parses config JSON; `path` names it in errors.
    pub fn from_slice(path: &Path, json: &[u8]) -> Result<Self, AuthError> {
        // serde_json's message gives line and column only, never the text around them, so it
        // cannot leak a secret from the file.
        let file: ConfigFile =
            serde_json::from_slice(json).map_err(|e| AuthError::DockerConfig {
                path: path.display().to_string(),
                reason: format!("not valid docker config JSON: {e}"),
            })?;
        Ok(DockerConfig {
            path: path.to_path_buf(),
            file,
            helper_dirs: None,
        })
    }

    /// Looks for `docker-credential-*` helpers only in `dirs` instead of on `PATH`.
    pub fn with_helper_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.helper_dirs = Some(dirs);
        self
    }

    /// The credentials docker would use for `registry` (a host as in references, e.g.
    /// `docker.io`, `ghcr.io`, `localhost:5000`). Blocking when a helper runs.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        let host = normalize_host(registry);
        if let Some(helper) = lookup(&self.file.cred_helpers, &host) {
            return self.run_helper(helper, registry, &host);
        }
        if let Some(store) = self.file.creds_store.as_deref().filter(|s| !s.is_empty())
            && let Some(c) = self.run_helper(store, registry, &host)?
        {
            return Ok(Some(c));
        }
        match lookup(&self.file.auths, &host) {
            Some(entry) => self.entry_credentials(entry, registry),
            None => Ok(None),
        }
    }

    fn entry_credentials(
        &self,
        e: &AuthEntry,
        registry: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        let some = |s: &Option<String>| s.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
        if let Some(t) = some(&e.identitytoken) {
            return Ok(Some(Credentials::IdentityToken(Secret::new(t))));
        }
        if let Some(t) = some(&e.registrytoken) {
            return Ok(Some(Credentials::RegistryToken(Secret::new(t))));
        }
        if let (Some(u), Some(p)) = (some(&e.username), some(&e.password)) {
            return Ok(Some(Credentials::Basic {
                username: u,
                password: Secret::new(p),
            }));
        }
        let Some(auth) = some(&e.auth) else {
            // `{}` entries are what `docker login` leaves when a credsStore holds the secret.
            return Ok(None);
        };
        let bad = |reason: &str| AuthError::DockerConfig {
            path: self.path.display().to_string(),
            reason: format!("the auth entry for {registry} {reason}"),
        };
        // Padding is sometimes stripped by hand-written configs; accept both.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .map_err(|_| bad("is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("is not base64 of user:password"))?;
        if user.is_empty() {
            return Err(bad("has an empty username"));
        }
        Ok(Some(Credentials::Basic {
            username: user.to_string(),
            password: Secret::new(pass),
        }))
    }

    fn run_helper(
        &self,
        helper: &str,
        registry: &str,
        host: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        let fail = |reason: String| AuthError::CredentialHelper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            reason,
        };
        if helper.is_empty() || helper.contains(['/', '\\']) || helper.starts_with('.') {
            return Err(fail("not a valid helper name".to_string()));
        }
        let program = self
            .find_helper(helper)
            .ok_or_else(|| fail("program not found".to_string()))?;
        // Docker passes Docker Hub's index URL and, for others, the host as logged in.
        let server_url = if host == DOCKER_HUB {
            DOCKER_HUB_INDEX
        } else {
            registry
        };
        tracing::debug!(registry, helper, "asking docker credential helper");
        let output = run_with_timeout(&program, server_url, HELPER_TIMEOUT).map_err(fail)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.success {
            // The helper protocol's "nothing stored" answer.
            if stdout.contains("credentials not found") {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let msg = format!("{} {}", stdout.trim(), stderr.trim());
            let msg: String = msg.trim().chars().take(200).collect();
            return Err(fail(format!("exited with failure: {msg}")));
        }
        let answer: HelperAnswer = serde_json::from_str(stdout.trim())
            .map_err(|_| fail("did not print {\"Username\",\"Secret\"} JSON".to_string()))?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if answer.username == TOKEN_USERNAME {
            Credentials::IdentityToken(Secret::new(answer.secret))
        } else {
            Credentials::Basic {
                username: answer.username,
                password: Secret::new(answer.secret),
            }
        }))
    }

    fn find_helper(&self, helper: &str) -> Option<PathBuf> {
        let name = format!("docker-credential-{helper}");
        let dirs: Vec<PathBuf> = match &self.helper_dirs {
            Some(d) => d.clone(),
            None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect(),
        };
        dirs.into_iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    }
}

/// Finds a map entry by registry host, trying an exact key first.
fn lookup<'a, V>(map: &'a BTreeMap<String, V>, host: &str) -> Option<&'a V> {
    if host == DOCKER_HUB
        && let Some(v) = map.get(DOCKER_HUB_INDEX)
    {
        return Some(v);
    }
    map.get(host).or_else(|| {
        map.iter()
            .find(|(k, _)| normalize_host(k) == host)
            .map(|(_, v)| v)
    })
}

/// Reduces a config key or registry name to a host: drops the scheme and any path, lowercases,
/// and maps Docker Hub's aliases to `docker.io`.
fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

struct HelperOutput {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `program get` with `input` on stdin, killing it after `timeout`.
fn run_with_timeout(
    program: &Path,
    input: &str,
    timeout: Duration,
) -> Result<HelperOutput, String> {
    let spawn = || {
        Command::new(program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // A helper installed a moment ago can still be open for writing in a child another thread
    // just forked (until that child execs): exec then fails with ETXTBSY. It clears at once.
    let mut attempts = 0;
    let mut child = loop {
        match spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.map_err(|e| format!("could not start: {e}"))?,
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin makes this fail; its exit status says more.
        let _ = stdin.write_all(input.as_bytes());
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", timeout.as_secs()));
            }
            Err(e) => return Err(format!("could not wait for it: {e}")),
        }
    };
    Ok(HelperOutput {
        success: status.success(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::from_slice(Path::new("test-config.json"), json.as_bytes()).unwrap()
    }

    fn basic(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials::basic(u, p))
    }

    #[test]
    fn auths_entries() {
        // "alice:pa:ss" — the password may itself contain ':'.
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        let c = config(&format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "https://ghcr.io": {{"username": "bob", "password": "pw"}},
                "quay.io": {{"identitytoken": "refresh-me"}},
                "tok.example": {{"registrytoken": "static"}},
                "empty.example": {{}},
                "localhost:5000": {{"auth": "{auth}", "email": "ignored@example.com"}}
              }},
              "HttpHeaders": {{"User-Agent": "x"}}
            }}"#
        ));
        assert_eq!(c.credentials("docker.io").unwrap(), basic("alice", "pa:ss"));
        assert_eq!(c.credentials("ghcr.io").unwrap(), basic("bob", "pw"));
        assert_eq!(
            c.credentials("quay.io").unwrap(),
            Some(Credentials::IdentityToken(Secret::new("refresh-me")))
        );
        assert_eq!(
            c.credentials("tok.example").unwrap(),
            Some(Credentials::RegistryToken(Secret::new("static")))
        );
        assert_eq!(c.credentials("empty.example").unwrap(), None);
        assert_eq!(
            c.credentials("localhost:5000").unwrap(),
            basic("alice", "pa:ss")
        );
        assert_eq!(c.credentials("other.example").unwrap(), None);
        // Debug names registries, not secrets.
        let debug = format!("{c:?}");
        assert!(debug.contains("ghcr.io") && !debug.contains("pw\"") && !debug.contains(&auth));
    }

    #[test]
    fn docker_hub_key_variants() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            let c = config(&format!(
                r#"{{"auths": {{"{key}": {{"username": "u", "password": "p"}}}}}}"#
            ));
            assert_eq!(
                c.credentials("docker.io").unwrap(),
                basic("u", "p"),
                "{key}"
            );
        }
        // The index key wins over a stray alias, as in docker.
        let c = config(
            r#"{"auths": {"docker.io": {"username": "alias", "password": "p"},
                          "https://index.docker.io/v1/": {"username": "index", "password": "p"}}}"#,
        );
        assert_eq!(c.credentials("docker.io").unwrap(), basic("index", "p"));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let err = DockerConfig::from_slice(Path::new("/x/config.json"), b"{not json").unwrap_err();
        assert!(err.to_string().contains("/x/config.json"), "{err}");
        let c = config(r#"{"auths": {"r.example": {"auth": "!!!notbase64"}}}"#);
        let err = c.credentials("r.example").unwrap_err();
        assert!(
            err.to_string().contains("r.example") && err.to_string().contains("base64"),
            "{err}"
        );
        let no_colon = base64::engine::general_purpose::STANDARD.encode("justuser");
        let c = config(&format!(
            r#"{{"auths": {{"r.example": {{"auth": "{no_colon}"}}}}}}"#
        ));
        assert!(c.credentials("r.example").is_err());
        let err = credentials_from_docker_config(Some(Path::new("/nonexistent/config.json")), "r")
            .unwrap_err();
        assert!(matches!(err, AuthError::DockerConfig { .. }), "{err}");
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("https://GHCR.io/"), "ghcr.io");
        assert_eq!(
            normalize_host("http://localhost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("registry.hub.docker.com"), "docker.io");
    }

    #[cfg(unix)]
    mod helpers {
        use super::*;
        use std::os::unix::fs::PermissionsExt;

        /// Writes `docker-credential-<name>` into `dir`. The script records the server URL it
        /// was asked about next to itself.
        fn write_helper(dir: &Path, name: &str, body: &str) {
            let path = dir.join(format!("docker-credential-{name}"));
            let script = format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread url\necho \"$url\" > \"$(dirname \"$0\")/asked-{name}\"\n{body}\n"
            );
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn asked(dir: &Path, name: &str) -> String {
            std::fs::read_to_string(dir.join(format!("asked-{name}")))
                .unwrap()
                .trim()
                .to_string()
        }

        #[test]
        fn cred_helpers_and_store() {
            let dir = tempfile::tempdir().unwrap();
            write_helper(
                dir.path(),
                "test",
                r#"echo '{"ServerURL":"x","Username":"helper-user","Secret":"helper-pass"}'"#,
            );
            write_helper(
                dir.path(),
                "tokens",
                r#"echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}'"#,
            );
            write_helper(
                dir.path(),
                "empty",
                "echo 'credentials not found in native keychain'; exit 1",
            );
            write_helper(dir.path(), "broken", "echo 'keychain locked' >&2; exit 1");
            let auth = base64::engine::general_purpose::STANDARD.encode("file-user:file-pass");
            let c = config(&format!(
                r#"{{
                  "credHelpers": {{"ghcr.io": "test", "https://quay.io": "tokens", "bad.example": "broken"}},
                  "credsStore": "empty",
                  "auths": {{"fallback.example": {{"auth": "{auth}"}}, "ghcr.io": {{"auth": "{auth}"}}}}
                }}"#
            ))
            .with_helper_dirs(vec![dir.path().to_path_buf()]);

            // credHelpers win over auths.
            assert_eq!(
                c.credentials("ghcr.io").unwrap(),
                basic("helper-user", "helper-pass")
            );
            assert_eq!(asked(dir.path(), "test"), "ghcr.io");
            // `<token>` means an identity token.
            assert_eq!(
                c.credentials("quay.io").unwrap(),
                Some(Credentials::IdentityToken(Secret::new("refresh")))
            );
            // credsStore knows nothing: fall back to the file's entry; or to nothing.
            assert_eq!(
                c.credentials("fallback.example").unwrap(),
                basic("file-user", "file-pass")
            );
            assert_eq!(c.credentials("docker.io").unwrap(), None);
            assert_eq!(asked(dir.path(), "empty"), "https://index.docker.io/v1/");
            // A failing helper is an error naming helper and registry, with its message.
            let err = c.credentials("bad.example").unwrap_err().to_string();
            assert!(
                err.contains("docker-credential-broken")
                    && err.contains("bad.example")
                    && err.contains("keychain locked"),
                "{err}"
            );
        }

        #[test]
        fn missing_and_hanging_helpers() {
            let dir = tempfile::tempdir().unwrap();
            let c = config(r#"{"credsStore": "absent"}"#)
                .with_helper_dirs(vec![dir.path().to_path_buf()]);
            let err = c.credentials("r.example").unwrap_err().to_string();
            assert!(
                err.contains("docker-credential-absent") && err.contains("not found"),
                "{err}"
            );
            let c = config(r#"{"credsStore": "../evil"}"#)
                .with_helper_dirs(vec![dir.path().to_path_buf()]);
            assert!(c.credentials("r.example").is_err());

            write_helper(dir.path(), "slow", "sleep 5");
            let program = dir.path().join("docker-credential-slow");
            let started = Instant::now();
            let err = run_with_timeout(&program, "r.example", Duration::from_millis(300))
                .err()
                .unwrap();
            assert!(err.contains("no answer"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(4));
        }
    }
}
