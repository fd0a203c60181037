//! Amazon ECR: `GetAuthorizationToken` with the AWS credential chain, and repository creation.
//!
//! Credentials come from `aws-config`'s default chain, exactly as the AWS CLI finds them:
//! environment keys, EKS IRSA web identity (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`), EKS
//! Pod Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), a profile, the instance profile (IMDS);
//! with `role_arn` set, those credentials then assume that role (cross-account pushes).
//! `AWS_ENDPOINT_URL` points both STS and ECR elsewhere (tests use moto). The SDK is used rather
//! than hand-written SigV4 because the chain is where the subtlety is (IMDSv2 sessions, web
//! identity refresh, pod identity tokens); its TLS stack is the rustls + aws-lc that reqwest
//! already builds, so what it adds is the smithy runtime only. Its HTTP client follows the
//! registry's `proxy` setting when there is one ([`proxy`]), else the environment's proxy.
//!
//! The token is base64 `AWS:<password>`, used as Basic credentials; it lives 12 hours and is
//! renewed after 9 (see [`super::CloudCredentials`]). With `create_repositories = true`, a
//! target repository is created (`CreateRepository`, already-exists is fine) before the first
//! push to it, with the configured tag mutability and scan-on-push. ECR answers every
//! cross-repository mount with 202 and an upload session, so crossdock does not ask it to mount.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use base64::Engine;
use tokio::sync::OnceCell;

use super::{ChallengeInfo, CloudError, Issued, Source};
use crate::registry::auth::{Credentials, Secret};
use crate::registry::http::{ProxySetting, ProxyUrl};

mod proxy;

/// How long a token is taken to live when ECR's `expiresAt` is missing or already past (a
/// skewed clock): short, so a wrong guess costs one early renewal, not a dead token.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(3600);

/// `image_tag_mutability` of repositories crossdock creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagMutability {
    /// Tags may move (ECR's default).
    Mutable,
    /// A pushed tag can never point elsewhere.
    Immutable,
}

impl std::str::FromStr for TagMutability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "MUTABLE" => Ok(TagMutability::Mutable),
            "IMMUTABLE" => Ok(TagMutability::Immutable),
            _ => Err(format!("expected MUTABLE or IMMUTABLE, found {s:?}")),
        }
    }
}

/// `[registries."HOST".ecr]`: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcrSettings {
    /// AWS region; default: from the host name, else the chain's (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// The registry's account id; default: from the host name, else the caller's account.
    pub registry_id: Option<String>,
    /// A role to assume with the chain's credentials (cross-account).
    pub role_arn: Option<String>,
    /// Create a missing target repository before the first push.
    pub create_repositories: bool,
    /// Tag mutability of created repositories (ECR's default: mutable).
    pub image_tag_mutability: Option<TagMutability>,
    /// Scan-on-push of created repositories.
    pub scan_on_push: bool,
}

/// `(account, region)` of an ECR registry host: `ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com`
/// (`.com.cn` in China) or the dual-stack `ACCOUNT.dkr-ecr[-fips].REGION.on.aws`.
pub fn parse_host(host: &str) -> Option<(&str, &str)> {
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
        .or_else(|| host.strip_suffix(".on.aws"))?;
    let mut parts = rest.split('.');
    let account = parts.next()?;
    let dkr = parts.next()?;
    let (ecr, region) = if dkr == "dkr-ecr" || dkr == "dkr-ecr-fips" {
        ("ecr", parts.next()?)
    } else {
        (parts.next()?, parts.next()?)
    };
    let ok = account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (dkr == "dkr" && (ecr == "ecr" || ecr == "ecr-fips") || dkr.starts_with("dkr-ecr"))
        && !region.is_empty()
        && parts.next().is_none();
    ok.then_some((account, region))
}

/// The ECR credential source of one registry.
pub(crate) struct EcrSource {
    registry: String,
    settings: EcrSettings,
    /// The registry's `proxy` setting, which the ECR and STS calls follow too.
    proxy: ProxySetting,
    client: OnceCell<aws_sdk_ecr::Client>,
}

impl EcrSource {
    pub(crate) fn new(registry: &str, mut settings: EcrSettings, proxy: ProxySetting) -> Self {
        let host = registry.split(':').next().unwrap_or(registry).to_string();
        if let Some((account, region)) = parse_host(&host) {
            settings.region.get_or_insert_with(|| region.to_string());
            settings
                .registry_id
                .get_or_insert_with(|| account.to_string());
        }
        EcrSource {
            registry: registry.to_string(),
            settings,
            proxy,
            client: OnceCell::new(),
        }
    }

    fn error(&self, reason: impl Into<String>, transient: bool) -> CloudError {
        CloudError {
            registry: self.registry.clone(),
            cloud: "ECR",
            source_name: self.describe(),
            reason: reason.into(),
            transient,
        }
    }

    fn sdk_error<E>(&self, call: &str, e: &SdkError<E, HttpResponse>) -> CloudError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        let (transient, answer) = match e {
            SdkError::DispatchFailure(d) => (d.is_io() || d.is_timeout(), Answer::None),
            SdkError::TimeoutError(_) => (true, Answer::None),
            _ => match e.raw_response() {
                Some(r) => (
                    false,
                    Answer::Status {
                        code: r.status().as_u16(),
                        without_aws_error: e.as_service_error().is_some_and(|s| s.code().is_none()),
                    },
                ),
                None => (false, Answer::Other),
            },
        };
        let hint = hint(answer, &self.proxy);
        self.error(
            format!("{call} failed{hint}: {}", DisplayErrorContext(e)),
            transient,
        )
    }

    /// The SDK client, built on first use (loading the chain's configuration is async).
    async fn client(&self) -> Result<&aws_sdk_ecr::Client, CloudError> {
        self.client
            .get_or_try_init(|| async {
                check_identity_files(self)?;
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                // Set on the loader, so STS (assume role, web identity) follows it too.
                let http = proxy::http_client(&self.proxy, |v| std::env::var(v).ok())
                    .map_err(|e| self.error(e.to_string(), false))?;
                if let Some(http) = http {
                    loader = loader.http_client(http);
                }
                if let Some(region) = &self.settings.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let sdk = loader.load().await;
                if sdk.region().is_none() {
                    return Err(self.error(
                        "no AWS region: set region in the registry's [ecr] table or AWS_REGION",
                        false,
                    ));
                }
                let mut conf = aws_sdk_ecr::config::Builder::from(&sdk);
                if let Some(role) = &self.settings.role_arn {
                    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                        .session_name("crossdock")
                        .configure(&sdk)
                        .build()
                        .await;
                    conf = conf.credentials_provider(provider);
                }
                Ok(aws_sdk_ecr::Client::from_conf(conf.build()))
            })
            .await
    }
}

/// How a failed API call ended, as far as its hint cares.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// No answer came: the connection or the wait failed.
    None,
    /// An HTTP answer; `without_aws_error`: a service error without an AWS error code.
    Status { code: u16, without_aws_error: bool },
    /// Anything else (the request could not be built or signed).
    Other,
}

/// What a failed API call's answer says, for its error. A forward proxy refusing a plain-HTTP
/// endpoint answers in the API's place; the SDK then reports an unknown service error (no AWS
/// error code), so the status says what happened, and where the proxy came from says where
/// to fix it. Behind the registry's own proxy a 401 is the proxy's too: the ECR and STS APIs
/// refuse with 403 and an error code, while tinyproxy refuses wrong proxy credentials with 401
/// rather than 407.
fn hint(answer: Answer, proxy: &ProxySetting) -> String {
    let (code, proxy_answered) = match (answer, proxy) {
        (
            Answer::Status {
                code,
                without_aws_error,
            },
            _,
        ) => (code, without_aws_error),
        (Answer::None, ProxySetting::Url(p)) => {
            return format!(" (through the registry's proxy {p})");
        }
        (Answer::None | Answer::Other, _) => return String::new(),
    };
    let no_credentials =
        |p: &ProxyUrl| p.url().username().is_empty() && p.url().password().is_none();
    match (code, proxy) {
        (401 | 407, ProxySetting::Url(p)) if no_credentials(p) => format!(
            " (HTTP {code}: the registry's proxy {p} wants credentials; give them in the \
             registry's proxy URL, http://USER:PASSWORD@HOST:PORT)"
        ),
        (401 | 407, ProxySetting::Url(p)) => format!(
            " (HTTP {code}: the registry's proxy {p} refused the credentials in the \
             registry's proxy URL; check the user and password there)"
        ),
        (407, ProxySetting::Direct) => {
            " (HTTP 407: something on the way to the AWS API wants proxy credentials, though \
             the registry's proxy = \"none\" sends the calls directly)"
                .to_string()
        }
        (407, ProxySetting::Environment) => {
            " (HTTP 407: a proxy on the way to the AWS API wants credentials; give them in \
             HTTPS_PROXY/HTTP_PROXY as http://USER:PASSWORD@HOST:PORT, or exempt the \
             endpoint in NO_PROXY)"
                .to_string()
        }
        (403, ProxySetting::Url(p)) if proxy_answered => format!(
            " (HTTP 403 without an AWS error: the registry's proxy {p} refused the request)"
        ),
        (403, _) if proxy_answered => {
            " (HTTP 403 without an AWS error: a proxy on the way refused the request)".to_string()
        }
        (code, _) => format!(" (HTTP {code})"),
    }
}

/// A web identity or pod identity token file named by the environment must be readable; the
/// SDK would only say "no providers in chain provided credentials".
fn check_identity_files(source: &EcrSource) -> Result<(), CloudError> {
    for var in [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ] {
        if let Some(path) = std::env::var_os(var)
            && let Err(e) = std::fs::metadata(&path)
        {
            return Err(source.error(
                format!(
                    "{var} names {}, which cannot be read ({e}); is the service account \
                         token volume mounted?",
                    std::path::Path::new(&path).display()
                ),
                false,
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Source for EcrSource {
    fn describe(&self) -> String {
        let env = |v: &str| std::env::var_os(v).is_some();
        let chain = if env("AWS_WEB_IDENTITY_TOKEN_FILE") && env("AWS_ROLE_ARN") {
            "the AWS credential chain (EKS IRSA web identity)"
        } else if env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            "the AWS credential chain (EKS Pod Identity)"
        } else if env("AWS_ACCESS_KEY_ID") {
            "the AWS credential chain (environment keys)"
        } else {
            "the AWS credential chain"
        };
        match &self.settings.role_arn {
            Some(role) => format!("{chain}, assuming role {role}"),
            None => chain.to_string(),
        }
    }

    async fn fetch(&self, _: ChallengeInfo<'_>) -> Result<Issued, CloudError> {
        let client = self.client().await?;
        let mut call = client.get_authorization_token();
        if let Some(id) = &self.settings.registry_id {
            // Deprecated by AWS (a token now serves every registry the caller may reach) but
            // still honoured; naming the account keeps cross-account setups explicit.
            #[allow(deprecated)]
            {
                call = call.registry_ids(id);
            }
        }
        let out = call
            .send()
            .await
            .map_err(|e| self.sdk_error("GetAuthorizationToken", &e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| self.error("GetAuthorizationToken returned no token", false))?;
        let encoded = data
            .authorization_token()
            .ok_or_else(|| self.error("GetAuthorizationToken returned no token", false))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| self.error("the authorization token is not base64 text", false))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| self.error("the authorization token is not USER:PASSWORD", false))?;
        let lifetime = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(FALLBACK_LIFETIME);
        Ok(Issued {
            credentials: Credentials::Basic {
                username: username.to_string(),
                password: Secret::new(password),
            },
            lifetime,
        })
    }

    async fn before_push(&self, repo: &str) -> Result<(), CloudError> {
        if !self.settings.create_repositories {
            return Ok(());
        }
        let client = self.client().await?;
        let mutability = match self.settings.image_tag_mutability {
            Some(TagMutability::Immutable) => aws_sdk_ecr::types::ImageTagMutability::Immutable,
            _ => aws_sdk_ecr::types::ImageTagMutability::Mutable,
        };
        let scanning = aws_sdk_ecr::types::ImageScanningConfiguration::builder()
            .scan_on_push(self.settings.scan_on_push)
            .build();
        let result = client
            .create_repository()
            .repository_name(repo)
            .set_registry_id(self.settings.registry_id.clone())
            .image_tag_mutability(mutability)
            .image_scanning_configuration(scanning)
            .send()
            .await;
        match result {
            Ok(_) => {
                tracing::info!(registry = %self.registry, repository = repo, "created ECR repository");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.sdk_error(&format!("CreateRepository {repo}"), &e)),
        }
    }

    fn mounts_blobs(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts() {
        assert_eq!(
            parse_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(("123456789012", "eu-west-1"))
        );
        assert_eq!(
            parse_host("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            Some(("123456789012", "us-east-1"))
        );
        assert_eq!(
            parse_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("123456789012", "cn-north-1"))
        );
        assert_eq!(
            parse_host("123456789012.dkr-ecr.us-east-1.on.aws"),
            Some(("123456789012", "us-east-1"))
        );
        for bad in [
            "12345.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.s3.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.x.amazonaws.com",
            "ecr.amazonaws.com",
            "public.ecr.aws",
        ] {
            assert_eq!(parse_host(bad), None, "{bad}");
        }
        let s = EcrSource::new(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            EcrSettings::default(),
            ProxySetting::Environment,
        );
        assert_eq!(s.settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.settings.registry_id.as_deref(), Some("123456789012"));
        assert!("immutable".parse::<TagMutability>().is_ok());
        assert!("frozen".parse::<TagMutability>().is_err());
    }

    #[test]
    fn hints_say_where_the_refusing_proxy_is_configured() {
        let refused = |code| Answer::Status {
            code,
            without_aws_error: true,
        };
        let registry = ProxySetting::parse("http://corp:hunter2@proxy.corp:3128").unwrap();
        let h = hint(refused(407), &registry);
        assert!(
            h.contains("the registry's proxy http://***@proxy.corp:3128 refused the credentials")
                && h.contains("registry's proxy URL")
                && !h.contains("HTTPS_PROXY")
                && !h.contains("hunter2"),
            "{h}"
        );
        let bare = ProxySetting::parse("http://proxy.corp:3128").unwrap();
        let h = hint(refused(407), &bare);
        assert!(
            h.contains("the registry's proxy http://proxy.corp:3128 wants credentials")
                && h.contains("http://USER:PASSWORD@HOST:PORT"),
            "{h}"
        );
        let h = hint(refused(401), &registry);
        assert!(h.starts_with(" (HTTP 401: the registry's proxy"), "{h}");
        let h = hint(refused(407), &ProxySetting::Environment);
        assert!(h.contains("HTTPS_PROXY/HTTP_PROXY"), "{h}");
        let h = hint(refused(403), &registry);
        assert!(
            h.contains("proxy http://***@proxy.corp:3128 refused the request"),
            "{h}"
        );
        // A 403 with an AWS error code is AWS's own refusal, not a proxy's.
        let aws = Answer::Status {
            code: 403,
            without_aws_error: false,
        };
        assert_eq!(hint(aws, &registry), " (HTTP 403)");
        assert_eq!(
            hint(Answer::None, &registry),
            " (through the registry's proxy http://***@proxy.corp:3128)"
        );
        assert_eq!(hint(Answer::None, &ProxySetting::Environment), "");
    }
}
