//! S3 and SQS clients built from [`AwsSettings`].

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::ResponseChecksumValidation;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::SdkError;
use std::error::Error;
use std::time::Duration;
use url::Url;

use crate::object::ObjectRef;
use crate::settings::{AwsSettings, SettingError};
use crate::startup::{Attempt, WaitError, wait_for};

/// The two AWS clients the pipeline uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Where S3 and SQS requests go, when not to AWS itself.
    s3_endpoint: Option<Url>,
    sqs_endpoint: Option<Url>,
    /// The shared configuration (region, credentials) and the endpoint
    /// for other services, for clients a single service needs.
    pub shared: aws_config::SdkConfig,
    pub endpoint: Option<Url>,
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
        if let Some(endpoint) = settings.sqs_endpoint() {
            sqs = sqs.endpoint_url(endpoint_str(endpoint));
        }
        Ok(Self {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            s3_endpoint: settings.s3_endpoint().cloned(),
            sqs_endpoint: settings.sqs_endpoint().cloned(),
            endpoint: settings.endpoint_url.clone(),
            shared,
        })
    }

    /// Where requests to `endpoint` go, for error messages:
    /// `endpoint <url>` or `AWS in <region>`.
    fn via(&self, endpoint: Option<&Url>) -> String {
        match endpoint {
            Some(endpoint) => format!("endpoint {}", endpoint_str(endpoint)),
            None => format!("AWS in {}", self.shared.region().map_or("", |r| r.as_ref())),
        }
    }

    /// The endpoint URL to give a client of another service, if any.
    pub fn endpoint_str(&self) -> Option<&str> {
        self.endpoint.as_ref().map(endpoint_str)
    }
}

/// `Url` always renders a path; `http://host:4566/` as an endpoint would
/// make every request path start with `//`.
fn endpoint_str(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

/// Whether a failed AWS call may succeed if tried again: the service could
/// not be reached, timed out, sent a broken answer, or answered 5xx or 429.
/// Any other answer (no such queue or bucket, access denied) is definitive.
pub fn may_pass<E>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::ServiceError(e) => {
            let status = e.raw().status();
            status.is_server_error() || status.as_u16() == 429
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// An AWS resource that did not answer as it should at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach {resource} via {via}: {reason}")]
pub struct CheckError {
    resource: String,
    via: String,
    reason: String,
}

/// Runs one start-up check of `resource` (`SQS queue <url>`, `S3 bucket
/// <name>`) until it passes, fails for good, or `wait` is spent.
/// `explain` words an answer by its HTTP status where the SDK says no more
/// than the status (a `HEAD` has no body).
async fn check<T, E, Fut>(
    resource: String,
    via: &str,
    wait: Duration,
    call: impl Fn() -> Fut,
    explain: fn(u16) -> Option<&'static str>,
) -> Result<T, WaitError<CheckError>>
where
    E: Error + Send + Sync + 'static,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    wait_for(&resource, wait, || async {
        call().await.map_err(|e| {
            let explained = match &e {
                SdkError::ServiceError(service) => explain(service.raw().status().as_u16()),
                _ => None,
            };
            let error = CheckError {
                resource: resource.clone(),
                via: via.to_owned(),
                reason: explained.map_or_else(|| crate::error_chain(&e), str::to_owned),
            };
            if may_pass(&e) {
                Attempt::NotReady(error)
            } else {
                Attempt::Failed(error)
            }
        })
    })
    .await
}

/// Checks that the queue exists and answers, so that a wrong `QUEUE_URL` or
/// endpoint is reported at start-up rather than after work was done.
/// Waits up to `wait` for an SQS endpoint that does not answer yet.
pub async fn check_queue(
    aws: &AwsClients,
    queue_url: &Url,
    wait: Duration,
) -> Result<(), WaitError<CheckError>> {
    check(
        format!("SQS queue {queue_url}"),
        &aws.via(aws.sqs_endpoint.as_ref()),
        wait,
        || {
            aws.sqs
                .get_queue_attributes()
                .queue_url(queue_url.as_str())
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
        },
        |_| None,
    )
    .await
    .map(drop)
}

/// Checks that the bucket exists and may be used (`HeadBucket`), waiting
/// up to `wait` for an S3 endpoint that does not answer yet.
pub async fn check_bucket(
    aws: &AwsClients,
    bucket: &str,
    wait: Duration,
) -> Result<(), WaitError<CheckError>> {
    check(
        format!("S3 bucket {bucket}"),
        &aws.via(aws.s3_endpoint.as_ref()),
        wait,
        || aws.s3.head_bucket().bucket(bucket).send(),
        |status| match status {
            404 => Some("HTTP 404: the bucket does not exist"),
            403 => Some("HTTP 403: access denied (HeadBucket needs s3:ListBucket on the bucket)"),
            _ => None,
        },
    )
    .await
    .map(drop)
}

/// Gets an object whose body is read next, waiting up to `wait` for an S3
/// endpoint that does not answer yet.
pub async fn check_object(
    aws: &AwsClients,
    object: &ObjectRef,
    wait: Duration,
) -> Result<GetObjectOutput, WaitError<CheckError>> {
    check(
        format!("S3 object {object}"),
        &aws.via(aws.s3_endpoint.as_ref()),
        wait,
        || {
            aws.s3
                .get_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .send()
        },
        |status| match status {
            404 => Some("HTTP 404: no such object"),
            403 => Some("HTTP 403: access denied (GetObject needs s3:GetObject on the key)"),
            _ => None,
        },
    )
    .await
}

/// The text of a Secrets Manager secret (a name or an ARN), waiting up to
/// `wait` for an endpoint that does not answer yet.
pub async fn check_secret(
    aws: &AwsClients,
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    wait: Duration,
) -> Result<Option<String>, WaitError<CheckError>> {
    check(
        format!("Secrets Manager secret {id}"),
        &aws.via(aws.endpoint.as_ref()),
        wait,
        || client.get_secret_value().secret_id(id).send(),
        |_| None,
    )
    .await
    .map(|secret| secret.secret_string().map(str::to_owned))
}

/// Every key under `prefix` (its `key`), in S3's order, waiting up to
/// `wait` for an S3 endpoint that does not answer yet.
pub async fn list_keys(
    aws: &AwsClients,
    prefix: &ObjectRef,
    wait: Duration,
) -> Result<Vec<String>, WaitError<CheckError>> {
    let list = || async {
        let mut keys = Vec::new();
        let mut pages = aws
            .s3
            .list_objects_v2()
            .bucket(&prefix.bucket)
            .prefix(&prefix.key)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page?
                    .contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        Ok(keys)
    };
    check(
        format!("S3 prefix {prefix}"),
        &aws.via(aws.s3_endpoint.as_ref()),
        wait,
        list,
        |status| match status {
            404 => Some("HTTP 404: the bucket does not exist"),
            403 => Some("HTTP 403: access denied (ListObjectsV2 needs s3:ListBucket on the bucket, for this prefix)"),
            _ => None,
        },
    )
    .await
}
