//! `crossdock inspect REF`: the manifest exactly as served, or its platforms as a table.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{EXIT_USAGE, ReadFlags};
use crate::manifest::{ManifestView, media_type};
use crate::reference::Reference;

/// Arguments of `inspect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock inspect --platforms oci:mirror:1.0
  crossdock inspect docker.io/library/alpine:3.20 > manifest.json
  crossdock inspect --platforms --json localhost:5001/hello@sha256:118430b03d6a950beb4342f6d4405ef18415a5a9a99a68b9036e7b717a790b24")]
pub struct InspectArgs {
    /// Image reference (tag or digest).
    pub reference: String,
    /// List the platforms (platform, digest, media type, size) instead of the raw manifest.
    #[arg(long)]
    pub platforms: bool,
    /// With --platforms: print JSON.
    #[arg(long)]
    pub json: bool,
    /// Registry connection options.
    #[command(flatten)]
    pub registry: ReadFlags,
}

/// A short name for a manifest media type.
pub(super) fn media_type_name(mt: &str) -> &'static str {
    match mt {
        media_type::OCI_INDEX => "OCI index",
        media_type::OCI_MANIFEST => "OCI manifest",
        media_type::DOCKER_MANIFEST_LIST => "Docker manifest list",
        media_type::DOCKER_MANIFEST => "Docker manifest",
        _ => "other",
    }
}

#[derive(Serialize)]
struct PlatformRow {
    platform: String,
    digest: String,
    media_type: String,
    size: u64,
}

/// Runs `inspect`.
pub(super) async fn run(args: InspectArgs) -> anyhow::Result<u8> {
    let r = match Reference::parse(&args.reference) {
        Ok(r) => r.with_default_tag(),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let connector = args.registry.connector(r.registry())?;
    let t = connector.get(r.registry())?;
    let m = t
        .manifest_get(r.repository(), &r.manifest_reference())
        .await
        .with_context(|| format!("reading {r}"))?;
    if !args.platforms {
        // Exactly the bytes served: what a digest pins (`| sha256sum` gives it). A newline
        // only for a terminal, so that the prompt starts on a line of its own.
        let mut out = std::io::stdout().lock();
        out.write_all(m.bytes())?;
        if out.is_terminal() && !m.bytes().ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        return Ok(0);
    }
    let rows: Vec<PlatformRow> = match m.view() {
        ManifestView::Index(i) => i
            .manifests
            .iter()
            .map(|d| PlatformRow {
                platform: d
                    .platform
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                digest: d.digest.to_string(),
                media_type: d.media_type.clone(),
                size: d.size,
            })
            .collect(),
        ManifestView::Image(img) => {
            // A single image: its platform is in its config.
            let platform = read_platform(&*t, r.repository(), &img.config).await;
            vec![PlatformRow {
                platform,
                digest: m.digest().to_string(),
                media_type: m.media_type().to_string(),
                size: m.size(),
            }]
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{} ({}, {})",
            r,
            media_type_name(m.media_type()),
            m.digest()
        );
        println!(
            "{:<20} {:<71} {:<48} {:>6}",
            "PLATFORM", "DIGEST", "MEDIA TYPE", "SIZE"
        );
        for row in rows {
            println!(
                "{:<20} {:<71} {:<48} {:>6}",
                row.platform, row.digest, row.media_type, row.size
            );
        }
    }
    Ok(0)
}

/// `os/arch[/variant]` of a single image, read from its config blob (see
/// [`crate::copy::compose::read_platform`]), or `-` when it cannot be read.
pub(super) async fn read_platform(
    t: &dyn crate::registry::Transport,
    repo: &str,
    config: &crate::manifest::Descriptor,
) -> String {
    match crate::copy::compose::read_platform(t, repo, config).await {
        Ok(p) => p.to_string(),
        Err(e) => {
            tracing::debug!(error = %e, "platform unknown");
            "-".into()
        }
    }
}
