//! Writing credentials to Docker's `config.json`, exactly as `docker login` / `logout` do.
//!
//! One login shared by docker, skopeo and crossdock is worth more than a store of our own, so
//! crossdock writes what docker writes: with a credential helper configured (`credHelpers` for
//! the registry, else `credsStore`) the secret goes to `docker-credential-<name> store` and the
//! file only gets an empty `auths` entry; otherwise `auths[<key>].auth = base64(user:password)`.
//! The key is `https://index.docker.io/v1/` for Docker Hub and the host otherwise. Every other
//! field of the file is kept; the file is replaced atomically and readable by its owner only.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{AuthError, Secret};
use crate::reference::DOCKER_HUB;

/// The `auths` key docker uses for a registry.
pub fn config_key(registry: &str) -> String {
    match registry {
        DOCKER_HUB | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

fn config_error(path: &Path, reason: impl Into<String>) -> AuthError {
    AuthError::DockerConfig {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Map<String, Value>, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(config_error(path, "not a JSON object")),
            Err(e) => Err(config_error(path, format!("invalid JSON: {e}"))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(config_error(path, e.to_string())),
    }
}

fn write(path: &Path, doc: &Map<String, Value>) -> Result<(), AuthError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| config_error(path, e.to_string()))?;
    let tmp: PathBuf = dir.join(format!(".config.json.crossdock-{}", std::process::id()));
    let mut bytes = serde_json::to_vec_pretty(doc).expect("JSON map serialises");
    bytes.push(b'\n');
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(config_error(path, e.to_string()));
    }
    Ok(())
}

/// The credential helper docker would use for `registry`, if any.
fn helper_for(doc: &Map<String, Value>, key: &str, registry: &str) -> Option<String> {
    let per = doc.get("credHelpers").and_then(Value::as_object);
    per.and_then(|h| h.get(registry).or_else(|| h.get(key)))
        .or_else(|| doc.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, action: &str, input: &[u8], registry: &str) -> Result<(), AuthError> {
    let fail = |reason: String| AuthError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run docker-credential-{helper}: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        // Helpers print their own message; it never contains the secret we sent.
        return Err(fail(format!(
            "{action} failed: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(())
}

/// Where credentials are written: the given file, else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn config_path(path: Option<&Path>) -> Result<PathBuf, AuthError> {
    match path {
        Some(p) => Ok(p.to_path_buf()),
        None => super::DockerConfig::default_path().ok_or_else(|| {
            config_error(
                Path::new("~/.docker/config.json"),
                "no home folder to find it in",
            )
        }),
    }
}

/// Stores `username`/`password` for `registry` as `docker login` does. Returns where.
pub fn store(
    path: &Path,
    registry: &str,
    username: &str,
    password: &Secret,
) -> Result<String, AuthError> {
    let mut doc = read(path)?;
    let key = config_key(registry);
    let helper = helper_for(&doc, &key, registry);
    let (entry, where_) = match helper {
        Some(helper) => {
            let input = serde_json::json!({
                "ServerURL": key, "Username": username, "Secret": password.expose()
            });
            run_helper(&helper, "store", input.to_string().as_bytes(), registry)?;
            (
                Value::Object(Map::new()),
                format!("credential helper docker-credential-{helper}"),
            )
        }
        None => {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            (
                serde_json::json!({ "auth": auth }),
                path.display().to_string(),
            )
        }
    };
    match doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(auths) => {
            auths.insert(key, entry);
        }
        _ => return Err(config_error(path, "\"auths\" is not an object")),
    }
    write(path, &doc)?;
    Ok(where_)
}

/// Removes the credentials for `registry` as `docker logout` does. `Ok(false)` when there were
/// none.
pub fn erase(path: &Path, registry: &str) -> Result<bool, AuthError> {
    let mut doc = read(path)?;
    let key = config_key(registry);
    if let Some(helper) = helper_for(&doc, &key, registry) {
        run_helper(&helper, "erase", key.as_bytes(), registry)?;
    }
    let removed = doc
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(&key))
        .is_some();
    if removed {
        write(path, &doc)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::auth::{Credentials, DockerConfig};

    #[test]
    fn store_then_read_back_then_erase_keeping_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"other:5000":{"auth":"eDp5"}},"psFormat":"x"}"#,
        )
        .unwrap();
        store(&path, "docker.io", "me", &Secret::new("pw")).unwrap();
        store(&path, "localhost:5000", "u", &Secret::new("p:w")).unwrap();
        let cfg = DockerConfig::load(&path).unwrap();
        assert_eq!(
            cfg.credentials("docker.io").unwrap(),
            Some(Credentials::basic("me", "pw"))
        );
        assert_eq!(
            cfg.credentials("localhost:5000").unwrap(),
            Some(Credentials::basic("u", "p:w"))
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["psFormat"], "x");
        assert!(doc["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only file");
        assert!(erase(&path, "docker.io").unwrap());
        assert!(!erase(&path, "docker.io").unwrap());
        let cfg = DockerConfig::load(&path).unwrap();
        assert_eq!(cfg.credentials("docker.io").unwrap(), None);
        assert!(cfg.credentials("other:5000").unwrap().is_some());
    }

    #[test]
    fn a_broken_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(store(&path, "r:1", "u", &Secret::new("p")).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }
}
