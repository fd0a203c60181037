//! `crossdock ls REPOSITORY`: tags, and with flags their digests and platforms.
//!
//! A HEAD per tag is enough for digests and media types; platforms need the manifest (an index
//! lists them; a single image keeps its platform in its config blob).

use clap::Args;
use futures_util::{StreamExt, stream};
use serde::Serialize;

use super::{EXIT_USAGE, ReadFlags};
use crate::manifest::ManifestView;
use crate::reference::Reference;

/// Arguments of `ls`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock ls oci:examples/hello
  crossdock ls --digests localhost:5001/mirror/library/alpine
  crossdock ls --platforms --json docker.io/library/alpine")]
pub struct LsArgs {
    /// Repository, e.g. docker.io/library/alpine or localhost:5000/mirror/app.
    pub repository: String,
    /// Add each tag's digest and media type (one HEAD per tag).
    #[arg(long)]
    pub digests: bool,
    /// Add each tag's platforms (reads each manifest).
    #[arg(long)]
    pub platforms: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Registry connection options.
    #[command(flatten)]
    pub registry: ReadFlags,
}

#[derive(Serialize)]
struct Row {
    tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platforms: Option<Vec<String>>,
}

/// Runs `ls`.
pub(super) async fn run(args: LsArgs) -> anyhow::Result<u8> {
    let r = match Reference::parse(&args.repository) {
        Ok(r) if r.tag().is_none() && r.digest().is_none() => r,
        Ok(_) => {
            eprintln!(
                "error: {:?} names a tag or digest; give a repository",
                args.repository
            );
            return Ok(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let connector = args.registry.connector(r.registry())?;
    let t = connector.get(r.registry())?;
    let mut tags = t.tags(r.repository()).await?;
    tags.sort();
    let repo = r.repository();
    let lookups: Vec<_> = tags
        .into_iter()
        .map(|tag| {
            let t = t.clone();
            let (digests, platforms) = (args.digests, args.platforms);
            async move {
                let mut row = Row {
                    tag,
                    digest: None,
                    media_type: None,
                    platforms: None,
                };
                if platforms {
                    let m = t.manifest_get(repo, &row.tag).await?;
                    row.digest = Some(m.digest().to_string());
                    row.media_type = Some(m.media_type().to_string());
                    row.platforms = Some(match m.view() {
                        ManifestView::Index(i) => i
                            .manifests
                            .iter()
                            .map(|d| d.platform.as_ref().map_or("-".into(), |p| p.to_string()))
                            .collect(),
                        ManifestView::Image(img) => {
                            vec![super::inspect::read_platform(&*t, repo, &img.config).await]
                        }
                    });
                } else if digests && let Some(h) = t.manifest_head(repo, &row.tag).await? {
                    row.digest = Some(h.digest.to_string());
                    row.media_type = Some(h.media_type);
                }
                Ok::<_, crate::registry::RegistryError>(row)
            }
        })
        .collect();
    let rows: Vec<Row> = stream::iter(lookups)
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    for row in rows {
        let mut line = row.tag.clone();
        if let Some(d) = &row.digest {
            line.push_str(&format!("\t{d}"));
        }
        if let Some(m) = &row.media_type {
            line.push_str(&format!("\t{}", super::inspect::media_type_name(m)));
        }
        if let Some(p) = &row.platforms {
            line.push_str(&format!("\t{}", p.join(",")));
        }
        println!("{line}");
    }
    Ok(0)
}
