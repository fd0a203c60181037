//! Target templates: where a source repository lands, e.g. `localhost:5001/mirror/{repo}`.
//!
//! Parsed once at load (placeholders checked), expanded per source; the expansion is a
//! reference, so a template that makes an invalid one for some source is refused at load too
//! (see [`crate::config`]).

use std::fmt;

use crate::reference::{Reference, ReferenceError};

/// Why a target template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{something}` that is not a known placeholder.
    #[error("unknown placeholder {{{0}}} (known: {{registry}}, {{repo}}, {{name}})")]
    UnknownPlaceholder(String),
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("unbalanced braces")]
    Unbalanced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Registry,
    Repo,
    Name,
}

/// Where a source repository lands: a reference template such as
/// `localhost:5001/mirror/{repo}`. Placeholders: `{registry}` (the source registry as named,
/// `docker.io` for Docker Hub), `{repo}` (the whole repository path, `library/alpine`) and
/// `{name}` (its last component, `alpine`).
#[derive(Clone, PartialEq, Eq)]
pub struct TargetTemplate {
    text: String,
    parts: Vec<TemplatePart>,
}

impl TargetTemplate {
    /// Parses a template (placeholders only; the expansion is checked per source by
    /// [`TargetTemplate::expand`]).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(TemplatePart::Literal(rest.to_string()));
                    break;
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(TemplatePart::Literal(rest[..i].to_string()));
                    }
                    if rest[i..].starts_with('}') {
                        return Err(TemplateError::Unbalanced);
                    }
                    let close = rest[i..].find('}').ok_or(TemplateError::Unbalanced)? + i;
                    let name = &rest[i + 1..close];
                    if name.contains('{') {
                        return Err(TemplateError::Unbalanced);
                    }
                    parts.push(match name {
                        "registry" => TemplatePart::Registry,
                        "repo" => TemplatePart::Repo,
                        "name" => TemplatePart::Name,
                        other => return Err(TemplateError::UnknownPlaceholder(other.to_string())),
                    });
                    rest = &rest[close + 1..];
                }
            }
        }
        Ok(TargetTemplate {
            text: text.to_string(),
            parts,
        })
    }

    /// Whether the template uses any placeholder (without one, every source maps to the same
    /// target).
    pub fn has_placeholder(&self) -> bool {
        self.parts
            .iter()
            .any(|p| !matches!(p, TemplatePart::Literal(_)))
    }

    /// The target repository (no tag) for a source repository.
    pub fn expand(&self, source: &Reference) -> Result<Reference, ReferenceError> {
        let mut s = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(l) => s.push_str(l),
                TemplatePart::Registry => s.push_str(source.registry()),
                TemplatePart::Repo => s.push_str(source.repository()),
                TemplatePart::Name => s.push_str(
                    source
                        .repository()
                        .rsplit('/')
                        .next()
                        .unwrap_or(source.repository()),
                ),
            }
        }
        Reference::parse(&s)
    }
}

impl fmt::Display for TargetTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TargetTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetTemplate({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let src = Reference::parse("docker.io/library/alpine").unwrap();
        let t = TargetTemplate::parse("localhost:5001/mirror/{registry}/{repo}").unwrap();
        assert_eq!(
            t.expand(&src).unwrap().to_string(),
            "localhost:5001/mirror/docker.io/library/alpine"
        );
        let t = TargetTemplate::parse("localhost:5001/{name}-copy").unwrap();
        assert!(t.has_placeholder());
        assert_eq!(
            t.expand(&src).unwrap().to_string(),
            "localhost:5001/alpine-copy"
        );
        let t = TargetTemplate::parse("localhost:5001/fixed").unwrap();
        assert!(!t.has_placeholder());
        assert_eq!(
            TargetTemplate::parse("x/{tag}").unwrap_err(),
            TemplateError::UnknownPlaceholder("tag".into())
        );
        for bad in ["x/{repo", "x/repo}", "x/{{repo}}", "x/{re{po}"] {
            assert!(TargetTemplate::parse(bad).is_err(), "{bad}");
        }
        // The registry of a port-bearing source is not a valid path component.
        let src = Reference::parse("localhost:5000/a/b").unwrap();
        let t = TargetTemplate::parse("localhost:5001/{registry}/{repo}").unwrap();
        assert!(t.expand(&src).is_err());
    }
}
