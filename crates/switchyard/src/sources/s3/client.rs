//! The AWS clients of an `s3` source, built once from its configuration: the SQS
//! client its notifications mode receives with, and the S3 client that polling mode
//! lists with and handlers reach through [`crate::Context::s3`].

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use switchyard_core::config::S3Source;

/// The session name the assumed role's sessions carry, as CloudTrail shows it.
const SESSION_NAME: &str = "switchyard";

/// The longest one SQS request may take: a 20 s long poll plus slack. Without it, a
/// connection that dies silently mid-poll would stall the source for good.
const SQS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(35);

/// One source's clients. Cheap to clone: the SDK clients share their configuration.
#[derive(Clone)]
pub(crate) struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Builds the clients `config` describes: its region and endpoint, its explicit
    /// credentials or else the standard AWS chain, and on top the role it assumes. No
    /// request is made here; credentials are fetched (and the role assumed) on the
    /// first call, and refreshed by the SDK as they expire.
    pub async fn new(config: &S3Source) -> Self {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(https);
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.expose(),
                secret.expose(),
                None,
                None,
                "switchyard configuration",
            ));
        }
        let mut shared = loader.load().await;
        if let Some(role) = &config.role_arn {
            let assumed = AssumeRoleProvider::builder(role)
                .session_name(SESSION_NAME)
                .configure(&shared)
                .build()
                .await;
            shared = shared
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(assumed))
                .build();
        }
        // S3-compatible servers rarely serve bucket names as host names.
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.endpoint.is_some())
            .build();
        let sqs_timeouts = shared
            .timeout_config()
            .map(TimeoutConfig::to_builder)
            .unwrap_or_default()
            .operation_attempt_timeout(SQS_ATTEMPT_TIMEOUT)
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&shared)
            .timeout_config(sqs_timeouts)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
        }
    }
}
