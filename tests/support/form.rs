//! `application/x-www-form-urlencoded` bodies and query strings, as the in-test identity
//! endpoints (`cloud_acr`, `cloud_gcp`) read them.

/// The name/value pairs of a form body or query string, in order.
pub(crate) fn pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

/// The first value of `name` among `f`.
pub(crate) fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
