//! An S3 bucket and SQS queue of a test's own, in LocalStack.

use aws_sdk_sqs::types::QueueAttributeName;
use pipeline_core::aws::AwsClients;
use pipeline_core::settings::AwsSettings;
use url::Url;

use crate::{env_url, proxy, run_detached, unique_name};

/// A bucket and a queue of its own for one test, in LocalStack.
#[derive(Debug)]
pub struct TestAws {
    pub clients: AwsClients,
    pub bucket: String,
    pub queue_url: Url,
    /// The queue's dead-letter queue (redrive after [`Self::MAX_RECEIVE_COUNT`] receives).
    pub dead_letter_url: Url,
}

impl TestAws {
    /// A new bucket and a new queue with a 30 s visibility timeout.
    pub async fn new() -> Self {
        Self::with_visibility_timeout(30).await
    }

    pub async fn with_visibility_timeout(seconds: u32) -> Self {
        Self::with_queue(seconds, Self::MAX_RECEIVE_COUNT).await
    }

    /// A new bucket and queue whose redrive policy moves a message to the
    /// dead-letter queue after `max_receive_count` receives.
    pub async fn with_queue(visibility_timeout: u32, max_receive_count: u32) -> Self {
        crate::logs();
        let seconds = visibility_timeout;
        let clients = AwsClients::new(&Self::settings())
            .await
            .expect("AWS settings");
        let bucket = unique_name("test");
        clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let create_queue = |name: String, attributes: Vec<(QueueAttributeName, String)>| {
            let mut request = clients.sqs.create_queue().queue_name(name);
            for (key, value) in attributes {
                request = request.attributes(key, value);
            }
            async move {
                let created = request.send().await.expect("create queue");
                Url::parse(created.queue_url().expect("a queue URL")).expect("a valid queue URL")
            }
        };
        let dead_letter_url = create_queue(unique_name("test-dlq"), vec![]).await;
        let dead_letter_arn = clients
            .sqs
            .get_queue_attributes()
            .queue_url(dead_letter_url.as_str())
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("a queue ARN");
        let redrive = format!(
            r#"{{"deadLetterTargetArn":"{dead_letter_arn}","maxReceiveCount":"{max_receive_count}"}}"#
        );
        let queue_url = create_queue(
            unique_name("test"),
            vec![
                (QueueAttributeName::VisibilityTimeout, seconds.to_string()),
                (QueueAttributeName::RedrivePolicy, redrive),
            ],
        )
        .await;
        Self {
            clients,
            bucket,
            queue_url,
            dead_letter_url,
        }
    }

    /// The redrive policy's maxReceiveCount of test queues by default.
    pub const MAX_RECEIVE_COUNT: u32 = 5;

    /// Reads up to 10 messages of the dead-letter queue, leaving them there.
    pub async fn dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.peek(&self.dead_letter_url).await
    }

    /// Takes every visible message off the queue and returns their bodies,
    /// as if they had been lost: for holding a message back.
    pub async fn take_bodies(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .clients
                .sqs
                .receive_message()
                .queue_url(self.queue_url.as_str())
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(self.queue_url.as_str())
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
                bodies.push(message.body.unwrap_or_default());
            }
        }
    }

    /// Settings pointing at the test LocalStack, as the services read them.
    pub fn settings() -> AwsSettings {
        AwsSettings {
            region: Some(Self::REGION.into()),
            endpoint_url: Some(Self::endpoint()),
            endpoint_url_s3: None,
            endpoint_url_sqs: None,
        }
    }

    pub const REGION: &str = "us-east-1";

    pub fn endpoint() -> Url {
        env_url("TEST_AWS_ENDPOINT_URL")
    }

    /// The environment a service process needs to reach this bucket and queue.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", Self::REGION.into()),
            ("AWS_ENDPOINT_URL", Self::endpoint().to_string()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("RAW_BUCKET", self.bucket.clone()),
            ("QUEUE_URL", self.queue_url.to_string()),
        ]
    }

    /// Every key in the bucket, in order, but the importer's `_state/`:
    /// every listing page, not only the first 1,000 keys.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned))
                    .filter(|key| !key.starts_with("_state/")),
            );
        }
        keys
    }

    /// Reads the visible messages and leaves them on the queue.
    pub async fn peek_messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.peek(&self.queue_url).await
    }

    /// Up to 10 visible messages of `queue`, each received with a visibility
    /// timeout of 0, so it is visible again at once.
    async fn peek(&self, queue: &Url) -> Vec<aws_sdk_sqs::types::Message> {
        let received = self
            .clients
            .sqs
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        received.messages.unwrap_or_default()
    }

    /// How many messages the queue holds: visible, in flight and delayed.
    pub async fn message_count(&self) -> u64 {
        self.total(&self.queue_url).await
    }

    /// How many messages the dead-letter queue holds: visible, in flight
    /// and delayed.
    pub async fn dead_letter_count(&self) -> u64 {
        self.total(&self.dead_letter_url).await
    }

    /// Messages of the dead-letter queue received and not yet deleted or
    /// visible again.
    pub async fn dead_letters_in_flight(&self) -> u64 {
        let in_flight = [QueueAttributeName::ApproximateNumberOfMessagesNotVisible];
        self.counts_of(&self.dead_letter_url, &in_flight).await[0]
    }

    async fn total(&self, queue: &Url) -> u64 {
        use QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed,
            ApproximateNumberOfMessagesNotVisible,
        };
        let all = [
            ApproximateNumberOfMessages,
            ApproximateNumberOfMessagesNotVisible,
            ApproximateNumberOfMessagesDelayed,
        ];
        self.counts_of(queue, &all).await.iter().sum()
    }

    /// The message a person feeding `key` of the test's bucket by hand
    /// writes: bucket and key only.
    pub fn minimal_message(&self, key: &str) -> String {
        format!(r#"{{"bucket": "{}", "key": "{key}"}}"#, self.bucket)
    }

    /// Sends a body straight to the dead-letter queue, with the reason the
    /// transformer would give.
    pub async fn send_dead_letter(&self, body: &str, reason: &str) -> String {
        let sent = self
            .clients
            .sqs
            .send_message()
            .queue_url(self.dead_letter_url.as_str())
            .message_body(body)
            .message_attributes(
                pipeline_core::contract::attribute::DEAD_LETTER_REASON,
                pipeline_core::contract::string_attribute(reason),
            )
            .send()
            .await
            .expect("send a dead letter");
        sent.message_id.unwrap_or_default()
    }

    /// The queue's approximate counts, in the order asked for.
    async fn queue_counts(&self, names: &[QueueAttributeName]) -> Vec<u64> {
        self.counts_of(&self.queue_url, names).await
    }

    async fn counts_of(&self, queue: &Url, names: &[QueueAttributeName]) -> Vec<u64> {
        let output = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(queue.as_str())
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attributes = output.attributes.unwrap_or_default();
        names
            .iter()
            .map(|name| {
                attributes
                    .get(name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("a count")
            })
            .collect()
    }

    /// Puts an object by hand.
    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.clients
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .expect("put object");
    }

    /// Visible and in-flight messages on the queue.
    pub async fn visible_and_in_flight(&self) -> (u64, u64) {
        let counts = self
            .queue_counts(&[
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ])
            .await;
        (counts[0], counts[1])
    }

    /// Clients whose S3 requests go through `proxy` and whose SQS requests
    /// go straight to LocalStack.
    pub async fn clients_with_s3_through(proxy: &proxy::Proxy) -> AwsClients {
        let settings = AwsSettings {
            endpoint_url_s3: Some(proxy.url()),
            ..Self::settings()
        };
        AwsClients::new(&settings).await.expect("AWS settings")
    }

    /// Clients whose S3 and SQS requests both go through `proxy`.
    pub async fn clients_through(proxy: &proxy::Proxy) -> AwsClients {
        let settings = AwsSettings {
            endpoint_url: Some(proxy.url()),
            ..Self::settings()
        };
        AwsClients::new(&settings).await.expect("AWS settings")
    }

    /// The object's metadata, content type and encoding, as S3 reports them.
    pub async fn head(&self, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.clients
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("head object")
    }

    /// The bytes of an object.
    pub async fn object_bytes(&self, key: &str) -> Vec<u8> {
        let object = self
            .clients
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        object
            .body
            .collect()
            .await
            .expect("read object")
            .into_bytes()
            .to_vec()
    }

    /// Runs the real aws CLI (LocalStack's virtualenv's, `TEST_AWS_CLI_DIR`)
    /// against the test LocalStack, and returns what it prints, as JSON
    /// (`null` when it prints nothing): for wiring AWS services the SDK
    /// clients here do not cover, as an operator would.
    pub async fn cli(args: &[&str]) -> serde_json::Value {
        let dir = std::env::var("TEST_AWS_CLI_DIR").unwrap_or_else(|_| {
            panic!("TEST_AWS_CLI_DIR is not set: run the tests with scripts/test")
        });
        let output = tokio::process::Command::new(std::path::Path::new(&dir).join("aws"))
            .args(args)
            .args([
                "--output",
                "json",
                "--endpoint-url",
                Self::endpoint().as_str(),
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // awscli 1 reads AWS_DEFAULT_REGION, 2 either.
            .env("AWS_REGION", Self::REGION)
            .env("AWS_DEFAULT_REGION", Self::REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .await
            .expect("run the aws CLI");
        assert!(
            output.status.success(),
            "aws {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&output.stdout).expect("the aws CLI prints JSON")
    }

    /// The queue's ARN, for wiring SNS or EventBridge to it.
    pub async fn queue_arn(&self) -> String {
        let attributes = Self::cli(&[
            "sqs",
            "get-queue-attributes",
            "--queue-url",
            self.queue_url.as_str(),
            "--attribute-names",
            "QueueArn",
        ])
        .await;
        attributes["Attributes"]["QueueArn"]
            .as_str()
            .expect("a queue ARN")
            .to_owned()
    }

    /// Sends a raw message body, as a person feeding an object by hand would.
    pub async fn send(&self, body: &str) -> String {
        let sent = self
            .clients
            .sqs
            .send_message()
            .queue_url(self.queue_url.as_str())
            .message_body(body)
            .send()
            .await
            .expect("send message");
        sent.message_id.unwrap_or_default()
    }
}

impl Drop for TestAws {
    fn drop(&mut self) {
        let (bucket, queue_url) = (self.bucket.clone(), self.queue_url.clone());
        let dead_letter_url = self.dead_letter_url.clone();
        run_detached(move || async move {
            // Fresh clients: the test's own are bound to its runtime.
            let Ok(clients) = AwsClients::new(&TestAws::settings()).await else {
                return;
            };
            for url in [queue_url, dead_letter_url] {
                let _ = clients
                    .sqs
                    .delete_queue()
                    .queue_url(url.as_str())
                    .send()
                    .await;
            }
            if let Ok(listed) = clients.s3.list_objects_v2().bucket(&bucket).send().await {
                for object in listed.contents() {
                    if let Some(key) = object.key() {
                        let _ = clients
                            .s3
                            .delete_object()
                            .bucket(&bucket)
                            .key(key)
                            .send()
                            .await;
                    }
                }
            }
            let _ = clients.s3.delete_bucket().bucket(&bucket).send().await;
        });
    }
}
