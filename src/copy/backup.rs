//! Backup tags: keep the image a tag pointed at reachable before the tag is moved.
//!
//! A mirror that overwrites `latest` loses the previous image the moment the tag moves (and a
//! registry's garbage collector may then delete it). With a backup template such as
//! `{tag}-backup-{date}`, the old manifest is first tagged under the expanded name — one GET and
//! one PUT of a manifest the registry already holds, no blob traffic.

use chrono::{DateTime, Utc};

use crate::digest::Digest;
use crate::reference::Reference;

/// The placeholders a template may use.
pub const PLACEHOLDERS: &str =
    "{tag}, {date} (YYYYMMDD), {datetime} (YYYYMMDDhhmmss), {digest} (12 hex digits)";

/// Expands `template` for `tag` that pointed at `old`, at time `now` (UTC). The result must be a
/// valid tag.
pub fn expand(
    template: &str,
    tag: &str,
    old: &Digest,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in backup tag template {template:?}"))?;
        let name = &rest[start + 1..start + end];
        match name {
            "tag" => out.push_str(tag),
            "date" => out.push_str(&now.format("%Y%m%d").to_string()),
            "datetime" => out.push_str(&now.format("%Y%m%d%H%M%S").to_string()),
            "digest" => out.push_str(&old.hex()[..12]),
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} in backup tag template {template:?}; use {PLACEHOLDERS}"
                ));
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Reference::validate_tag(&out)
        .map_err(|e| format!("backup tag template {template:?} gives {out:?}: {e}"))?;
    if out == tag {
        return Err(format!(
            "backup tag template {template:?} gives the tag itself; add a placeholder or suffix"
        ));
    }
    Ok(out)
}

/// Checks a template as configuration is loaded (expanding it for a sample tag).
pub fn check_template(template: &str) -> Result<(), String> {
    expand(template, "latest", &Digest::sha256_of(b""), Utc::now()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expands_placeholders() {
        let d = Digest::sha256_of(b"");
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 15, 4, 5).unwrap();
        assert_eq!(
            expand("{tag}-backup-{date}", "latest", &d, now).unwrap(),
            "latest-backup-20261126"
        );
        assert_eq!(
            expand("bk-{datetime}-{digest}", "v1", &d, now).unwrap(),
            "bk-20261126150405-e3b0c44298fc"
        );
    }

    #[test]
    fn refuses_bad_templates() {
        let d = Digest::sha256_of(b"");
        let now = Utc::now();
        assert!(
            expand("{tag}-{nope}", "v1", &d, now)
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(expand("{tag", "v1", &d, now).is_err());
        assert!(
            expand("{tag}", "v1", &d, now)
                .unwrap_err()
                .contains("the tag itself")
        );
        assert!(expand("bad/{tag}", "v1", &d, now).is_err());
        assert!(check_template(&format!("{}{{tag}}", "x".repeat(130))).is_err());
    }
}
