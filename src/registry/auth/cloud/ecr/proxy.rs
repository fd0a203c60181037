//! The AWS SDK's HTTP client for a registry whose configuration names its own `proxy`.
//!
//! The SDK does not use crossdock's reqwest client: it builds a hyper client of its own, which
//! reads `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` itself. That stays so when the registry leaves
//! `proxy` unset. When the registry sets it, the ECR and STS calls follow it like the
//! registry's own requests: a proxy URL sends them through that proxy (its credentials as
//! Basic `Proxy-Authorization`, percent-decoded as in the URL), `"none"` sends them directly
//! whatever the environment says. The client is built as `aws-smithy-runtime` builds its
//! default one (rustls with aws-lc), with only the proxy changed.
//!
//! One exception to "every call through the proxy": the instance's and the pod's own
//! credential endpoints (IMDS at 169.254.169.254 or fd00:ec2::254, the ECS and EKS Pod
//! Identity agents at 169.254.170.x or fd00:ec2::23, or wherever
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` and `AWS_CONTAINER_CREDENTIALS_FULL_URI` point) are
//! always reached directly: through a proxy they are unreachable, or worse, answer with the
//! proxy machine's identity.

use aws_sdk_ecr::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::{Builder, ConnectorBuilder};

use crate::registry::http::{ProxySetting, ProxyUrl};

/// Link-local networks, where the cloud's metadata and credential agents live.
const LOCAL_CREDENTIAL_ENDPOINTS: &str = "169.254.0.0/16,fd00:ec2::/32,fe80::/10";

/// Variables naming a credential endpoint elsewhere (tests, Greengrass, custom agents).
const ENDPOINT_VARS: [&str; 2] = [
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Why the registry's proxy cannot be given to the SDK. Never quotes the proxy's credentials.
#[derive(Debug, thiserror::Error)]
#[error("the registry's proxy {proxy} cannot be used for the AWS API: {reason}")]
pub(super) struct AwsProxyError {
    proxy: ProxyUrl,
    reason: String,
}

/// The SDK client for `setting`; `None` leaves the SDK's own (the environment's proxy).
/// `var` reads the process environment.
pub(super) fn http_client(
    setting: &ProxySetting,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<SharedHttpClient>, AwsProxyError> {
    let config = match setting {
        ProxySetting::Environment => return Ok(None),
        ProxySetting::Direct => ProxyConfig::disabled(),
        ProxySetting::Url(proxy) => proxy_config(proxy, &var)?,
    };
    // As aws-smithy-runtime's `default_https_client` builds it: the client `Builder` itself
    // takes no proxy, only the connector built per connector settings does. The closure keeps
    // `config`, whose `Debug` would show the credentials; the client's `Debug` does not show
    // the closure, and nothing here prints it.
    let client = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(config.clone()));
        connector.build()
    });
    Ok(Some(client))
}

/// Every call through `proxy`, except the local credential endpoints.
fn proxy_config(
    proxy: &ProxyUrl,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<ProxyConfig, AwsProxyError> {
    let url = proxy.url();
    let mut bare = url.clone();
    // Given apart from the URL, so that nothing parsing or printing the URL holds them.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let mut config = ProxyConfig::all(bare.as_str()).map_err(|e| AwsProxyError {
        proxy: proxy.clone(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // Percent-encoded as in the URL; the SDK's proxy matcher decodes them.
        config = config.with_basic_auth(url.username(), url.password().unwrap_or_default());
    }
    Ok(config.no_proxy(direct_hosts(var)))
}

/// The `NO_PROXY` list of the local credential endpoints.
fn direct_hosts(var: &impl Fn(&str) -> Option<String>) -> String {
    let mut list = LOCAL_CREDENTIAL_ENDPOINTS.to_string();
    for name in ENDPOINT_VARS {
        if let Some(host) = var(name)
            .and_then(|v| url::Url::parse(&v).ok())
            .and_then(|u| u.host_str().map(str::to_string))
        {
            list.push(',');
            list.push_str(host.trim_start_matches('[').trim_end_matches(']'));
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_environment_keeps_the_sdk_client() {
        let none = http_client(&ProxySetting::Environment, env(&[])).unwrap();
        assert!(none.is_none());
        assert!(
            http_client(&ProxySetting::Direct, env(&[]))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn local_credential_endpoints_stay_direct() {
        assert_eq!(direct_hosts(&env(&[])), LOCAL_CREDENTIAL_ENDPOINTS);
        let list = direct_hosts(&env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:8080/v1/credentials",
            ),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                "http://[fd00:ec2::254]",
            ),
        ]));
        assert!(list.ends_with(",fd00:ec2::254,127.0.0.1"), "{list}");
    }
}
