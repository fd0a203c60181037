//! Layout references in a configuration file are relative to the file's folder, like every
//! other path in it: `source = "oci:examples/hello"` in `/etc/crossdock/config.toml` names
//! `/etc/crossdock/examples/hello`, whatever the daemon's working directory.
//!
//! Done on the raw values, before validation, so that the references, the target templates and
//! the messages about them all see the same anchored path.

use std::path::Path;

use super::raw::RawConfig;
use crate::reference::LAYOUT_PREFIX;

/// Rewrites every relative `oci:PATH…` of rules (sources, targets) and index rules (sources,
/// target) to be relative to `base`, the configuration file's folder.
pub(super) fn anchor_layouts(raw: &mut RawConfig, base: &Path) {
    for rule in raw.rules.iter_mut().flatten() {
        for list in [&mut rule.source, &mut rule.target].into_iter().flatten() {
            list.0.iter_mut().for_each(|s| anchor(s, base));
        }
    }
    for index in raw.indexes.iter_mut().flatten() {
        index.target.iter_mut().for_each(|s| anchor(s, base));
        index
            .sources
            .iter_mut()
            .flatten()
            .for_each(|s| anchor(s, base));
    }
}

fn anchor(text: &mut String, base: &Path) {
    let Some(rest) = text.strip_prefix(LAYOUT_PREFIX) else {
        return;
    };
    if rest.is_empty() || Path::new(rest).is_absolute() || base.as_os_str().is_empty() {
        return;
    }
    *text = format!("{LAYOUT_PREFIX}{}", base.join(rest).display());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchored(text: &str, base: &str) -> String {
        let mut s = text.to_string();
        anchor(&mut s, Path::new(base));
        s
    }

    #[test]
    fn relative_layouts_move_under_the_file_folder() {
        assert_eq!(anchored("oci:mirror", "/etc/cd"), "oci:/etc/cd/mirror");
        assert_eq!(anchored("oci:./m:1.0", "/etc/cd"), "oci:/etc/cd/./m:1.0");
        assert_eq!(anchored("oci:/abs/m", "/etc/cd"), "oci:/abs/m");
        // A file named without a folder: its folder is the working directory already.
        assert_eq!(anchored("oci:mirror", ""), "oci:mirror");
        assert_eq!(anchored("localhost:5000/a", "/etc/cd"), "localhost:5000/a");
        // An empty path stays empty, for the reference parser to refuse with its own words.
        assert_eq!(anchored("oci:", "/etc/cd"), "oci:");
    }
}
