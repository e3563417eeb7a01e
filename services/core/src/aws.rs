//! S3 and SQS clients built from [`AwsSettings`].

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::ResponseChecksumValidation;
use std::error::Error;
use url::Url;

use crate::settings::{AwsSettings, SettingError};

/// The two AWS clients the pipeline uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Where SQS requests go, for error messages: `endpoint <url>` or
    /// `AWS in <region>`.
    pub sqs_via: String,
}

impl AwsClients {
    /// Builds the clients. Makes no network call: credentials are resolved
    /// lazily by the SDK on the first request.
    pub async fn new(settings: &AwsSettings) -> Result<Self, SettingError> {
        let region = settings.region()?.to_owned();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .load()
            .await;

        // Responses are checked against S3's checksum only when a GET asks
        // for it (`checksum_mode`): the transformer hashes every object it
        // reads anyway, and asks S3 only when it has no digest to compare.
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = settings.s3_endpoint() {
            // Virtual-hosted addressing needs DNS for `<bucket>.<endpoint>`,
            // which emulators such as LocalStack do not have.
            s3 = s3
                .endpoint_url(endpoint_str(endpoint))
                .force_path_style(true);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(&shared);
        let sqs_via = match settings.sqs_endpoint() {
            Some(endpoint) => {
                sqs = sqs.endpoint_url(endpoint_str(endpoint));
                format!("endpoint {}", endpoint_str(endpoint))
            }
            None => format!("AWS in {}", settings.region()?),
        };
        Ok(Self {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            sqs_via,
        })
    }
}

/// `Url` always renders a path; `http://host:4566/` as an endpoint would
/// make every request path start with `//`.
fn endpoint_str(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

/// Renders an SDK error with its whole cause chain on one line: the SDK's
/// own `Display` says only "dispatch failure" or "service error".
pub fn describe(error: &(dyn Error + 'static)) -> String {
    crate::error_chain(error)
}

/// Checks that the queue exists and answers, so that a wrong `QUEUE_URL` or
/// endpoint is reported at start-up rather than after work was done.
pub async fn check_queue(aws: &AwsClients, queue_url: &Url) -> Result<(), String> {
    let via = &aws.sqs_via;
    aws.sqs
        .get_queue_attributes()
        .queue_url(queue_url.as_str())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map(drop)
        .map_err(|e| {
            format!(
                "cannot reach SQS queue {queue_url} via {via}: {}",
                describe(&e)
            )
        })
}
