//! The prune tests' mirror (`tests/prune.rs`, `tests/prune_dry_run.rs`): a source and a
//! mirror distribution 2.8 registry (deletes enabled), one rule `r` between them taking `^v`
//! tags, and readers of what `crossdock sync` reported.

use std::path::Path;

use serde_json::Value;

use super::cli;
use super::daemon::write_config;
use super::{BuiltImage, Format, ImageSpec, TestRegistry};

/// A one-platform image, different for each seed.
pub(crate) fn image(seed: u64) -> BuiltImage {
    ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(seed)
        .build()
}

/// A source and a mirror registry, a runtime to push with, and a config directory.
pub(crate) struct Mirror {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) src: TestRegistry,
    pub(crate) dst: TestRegistry,
    pub(crate) dir: tempfile::TempDir,
}

impl Mirror {
    pub(crate) fn new() -> Mirror {
        Mirror {
            rt: tokio::runtime::Runtime::new().unwrap(),
            src: TestRegistry::start(),
            dst: TestRegistry::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Pushes `image` to the source's `app` under each tag.
    pub(crate) fn push(&self, image: &BuiltImage, tags: &[&str]) {
        for tag in tags {
            self.rt
                .block_on(self.src.client().push_image("app", tag, image));
        }
    }

    /// Pushes `image` straight to the mirror's `app` under `tag`.
    pub(crate) fn push_to_mirror(&self, image: &BuiltImage, tag: &str) {
        self.rt
            .block_on(self.dst.client().push_image("app", tag, image));
    }

    /// Deletes `image` at the source (every tag on it: distribution 2.8 deletes by digest).
    pub(crate) fn delete_at_source(&self, image: &BuiltImage) {
        self.rt
            .block_on(self.src.client().delete_manifest("app", image.digest()));
    }

    /// The mirror's tags of `app`, sorted.
    pub(crate) fn mirror_tags(&self) -> Vec<String> {
        let mut tags = self.rt.block_on(self.dst.client().tags("app"));
        tags.sort();
        tags
    }

    /// A config with one rule `r` from the source's `app` to the mirror's `app`, tags `^v`,
    /// and `extra` rule keys.
    pub(crate) fn config(&self, extra: &str) -> std::path::PathBuf {
        let text = format!(
            "[[rules]]\nname = \"r\"\nsource = \"{}/app\"\ntarget = \"{}/{{repo}}\"\n\
             schedule = \"@every 1h\"\n{extra}\n[rules.tags]\ninclude = [\"^v\"]\n",
            self.src.host(),
            self.dst.host()
        );
        write_config(self.dir.path(), &text)
    }

    /// A config with one pruning rule `r` from the source's `app` into the OCI layout
    /// `<layout>/app` (a target that deletes by tag), tags `^v`.
    pub(crate) fn layout_config(&self, layout: &Path) -> std::path::PathBuf {
        let text = format!(
            "[[rules]]\nname = \"r\"\nsource = \"{}/app\"\ntarget = \"oci:{}/{{name}}\"\n\
             prune = true\n[rules.tags]\ninclude = [\"^v\"]\n",
            self.src.host(),
            layout.display()
        );
        write_config(self.dir.path(), &text)
    }
}

/// `list` as owned strings, sorted.
pub(crate) fn tags(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|t| t.to_string()).collect();
    v.sort();
    v
}

/// The outcomes of the run of rule `r` in a `sync --json` report with state `state`, as
/// target tags.
pub(crate) fn with_state(report: &Value, state: &str) -> Vec<String> {
    let mut out: Vec<String> = report[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == state)
        .map(|i| {
            let target = i["target"].as_str().unwrap();
            target.rsplit_once(':').unwrap().1.to_string()
        })
        .collect();
    out.sort();
    out
}

/// `sync` as a user sees it (no --json), and whether it succeeded.
pub(crate) fn sync_text(config: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["sync", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = cli::crossdock(&args);
    (out.status.success(), cli::text(&out))
}

/// The tags of the OCI layout at `dir` (the `org.opencontainers.image.ref.name` annotations of
/// its `index.json`), sorted.
pub(crate) fn layout_tags(dir: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    tags.sort();
    tags
}
