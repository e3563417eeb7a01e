//! The local stack's wiring, checked without Docker: the compose file sets
//! only variables the binaries read, gives each service every setting it
//! needs, and the LocalStack init hook creates what the services expect.

use aws_sdk_sqs::types::QueueAttributeName;
use clap::CommandFactory;
use pipeline_core::aws::AwsClients;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use testkit::compose::{environment, services as compose_services, workspace};
use testkit::{TestAws, unique_name};

/// Read by a library rather than by a command-line setting: the AWS SDK's
/// credentials, the log filter, and the OpenTelemetry SDK's settings.
const LIBRARY_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_SDK_DISABLED",
];

/// Every environment variable a binary's command line reads.
fn variables_read(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    for sub in command.get_subcommands() {
        names.extend(variables_read(sub));
    }
    names
}

#[test]
fn every_variable_the_compose_file_sets_is_one_the_binaries_read() {
    let services = compose_services();
    let importer = variables_read(&importer::settings::Cli::command());
    let transformer = variables_read(&transformer::settings::Cli::command());
    assert!(importer.contains("SOURCE_URL") && transformer.contains("DATABASE_URL"));

    for (service, reads) in [
        ("importer", &importer),
        ("transformer", &transformer),
        ("migrate", &transformer),
    ] {
        let env = environment(&services[service]);
        assert!(!env.is_empty(), "{service} sets no environment");
        let unknown: Vec<&String> = env
            .keys()
            .filter(|name| !reads.contains(*name) && !LIBRARY_VARIABLES.contains(&name.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "docker-compose.yml sets {unknown:?} on {service}, which its binary does not read"
        );
    }
}

#[test]
fn services_that_can_scale_have_no_fixed_names_or_host_ports() {
    let services = compose_services();
    for name in ["transformer", "importer"] {
        let service = &services[name];
        assert!(
            service["container_name"].is_badvalue(),
            "{name} has a container_name"
        );
        assert!(service["ports"].is_badvalue(), "{name} publishes ports");
    }
    let transformer = &services["transformer"]["depends_on"];
    assert_eq!(
        transformer["migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        transformer["localstack"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[tokio::test]
async fn the_localstack_init_hook_creates_the_bucket_and_queues_with_a_redrive_policy() {
    let name = unique_name("init");
    let (bucket, queue, dlq) = (name.clone(), name.clone(), format!("{name}-dlq"));
    let hook = workspace().join("localstack/init/ready.d/10-pipeline-resources.sh");
    let path = match std::env::var_os("TEST_AWS_CLI_DIR") {
        Some(dir) => std::env::join_paths(std::iter::once(PathBuf::from(dir)).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap(),
        None => std::env::var_os("PATH").unwrap_or_default(),
    };
    // Twice: the hook must be idempotent (LocalStack with persistence, or a
    // demo run again, runs it over existing resources).
    for _ in 0..2 {
        let output = Command::new(&hook)
            .env("PATH", &path)
            .env("AWS_ENDPOINT_URL", TestAws::endpoint().as_str())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("RAW_BUCKET", &bucket)
            .env("QUEUE_NAME", &queue)
            .env("DLQ_NAME", &dlq)
            .env("MAX_RECEIVE_COUNT", "7")
            .env("VISIBILITY_TIMEOUT", "45")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the init hook failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let clients = AwsClients::new(&TestAws::settings()).await.unwrap();
    clients
        .s3
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the bucket exists");
    let url_of = async |name: &str| {
        clients
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue {name}: {e:?}"))
            .queue_url
            .unwrap()
    };
    let (queue_url, dlq_url) = (url_of(&queue).await, url_of(&dlq).await);
    let attributes = |url: String| {
        let sqs = clients.sqs.clone();
        async move {
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()
        }
    };
    let queue_attributes = attributes(queue_url).await;
    let dlq_arn = attributes(dlq_url).await[&QueueAttributeName::QueueArn].clone();

    assert_eq!(
        queue_attributes[&QueueAttributeName::VisibilityTimeout],
        "45"
    );
    assert_eq!(
        queue_attributes[&QueueAttributeName::ReceiveMessageWaitTimeSeconds],
        "20"
    );
    let redrive: serde_json::Value =
        serde_json::from_str(&queue_attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dlq_arn.as_str());
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "7"
    );
}
