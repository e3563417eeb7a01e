//! The local stack's wiring, checked without Docker: the compose file sets
//! only variables the binaries read, gives each service every setting it
//! needs, and the LocalStack init hook creates what the services expect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_sqs::types::QueueAttributeName;
use clap::CommandFactory;
use e2e::variables_read;
use pipeline_core::aws::AwsClients;
use std::path::PathBuf;
use std::process::Command;
use testkit::compose::{environment, services as compose_services, workspace};
use testkit::{TestAws, unique_name};

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
        let unknown = e2e::unknown(env.keys(), reads);
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

#[test]
fn the_compose_file_runs_on_the_docker_engine_the_readme_names() {
    // The README says Docker Engine 23; a healthcheck's start_interval
    // needs 25, where older engines refuse the whole file.
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(
        readme.contains("Engine 23"),
        "the README names another engine"
    );
    for (name, service) in compose_services() {
        assert!(
            service["healthcheck"]["start_interval"].is_badvalue(),
            "{name}'s healthcheck has start_interval (Docker Engine 25)"
        );
    }
    // On SELinux hosts a bind mount the container must read needs :z.
    let localstack = &compose_services()["localstack"];
    let hook = localstack["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.contains("/etc/localstack/init/ready.d"))
        .expect("the init hook is mounted");
    let options: Vec<&str> = hook.rsplit(':').next().unwrap().split(',').collect();
    assert!(
        options.contains(&"z"),
        "{hook} is not relabelled for SELinux"
    );
    assert!(options.contains(&"ro"), "{hook} is writable");
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

/// The LocalStack healthcheck of the compose file, run as Docker runs it
/// (`CMD python3 -c ...`), against `endpoint` instead of localhost:4566.
fn localstack_healthcheck(endpoint: &url::Url) -> std::process::Output {
    let services = compose_services();
    let test: Vec<String> = services["localstack"]["healthcheck"]["test"]
        .as_vec()
        .expect("an exec-form healthcheck")
        .iter()
        .map(|part| part.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(test[..3], ["CMD", "python3", "-c"], "{test:?}");
    let code = test[3].replace(
        "http://localhost:4566",
        endpoint.as_str().trim_end_matches('/'),
    );
    Command::new("python3")
        .args(["-c", &code])
        .output()
        .unwrap()
}

/// LocalStack's environment in the compose file, with `AWS_REGION` set as a
/// user would set it for the whole stack.
fn localstack_env(region: &str) -> Vec<(String, String)> {
    let raw = std::fs::read_to_string(workspace().join("docker-compose.yml")).unwrap();
    let services = compose_services();
    let mut env: Vec<(String, String)> = environment(&services["localstack"])
        .into_iter()
        .filter(|(name, _)| name != "SERVICES" && name != "LOCALSTACK_AUTH_TOKEN")
        .collect();
    for (name, value) in &mut env {
        if name == "AWS_REGION" || name == "AWS_DEFAULT_REGION" {
            // Both follow the variable the services' AWS_REGION follows.
            assert!(
                raw.contains(&format!("      {name}: ${{AWS_REGION:-us-east-1}}")),
                "LocalStack's {name} does not follow AWS_REGION"
            );
            *value = region.to_owned();
        }
    }
    assert!(
        env.iter().any(|(name, _)| name == "AWS_DEFAULT_REGION"),
        "{env:?}"
    );
    env
}

#[tokio::test]
async fn the_localstack_healthcheck_passes_only_when_the_init_hook_succeeded_in_the_services_region()
 {
    use testkit::localstack::LocalStack;
    let hook = workspace().join("localstack/init/ready.d/10-pipeline-resources.sh");
    let region = "eu-west-1";
    let good_env = localstack_env(region);
    // The same hook, failing: S3 refuses the bucket name.
    let mut bad_env = good_env.clone();
    for (name, value) in &mut bad_env {
        if name == "RAW_BUCKET" {
            *value = "Not_A_Valid_Bucket".into();
        }
    }
    let (good, bad) = tokio::join!(
        LocalStack::start_with_ready_hooks(std::slice::from_ref(&hook), &good_env),
        LocalStack::start_with_ready_hooks(std::slice::from_ref(&hook), &bad_env),
    );

    // The hook succeeded: healthy, and the queue is where the services look
    // for it, in their region.
    let stage = good.wait_for_ready_stage().await;
    assert_eq!(
        stage["scripts"][0]["state"],
        "SUCCESSFUL",
        "{stage}\n{}",
        good.log()
    );
    let check = localstack_healthcheck(good.endpoint());
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let services = compose_services();
    let queue_url = environment(&services["transformer"])["QUEUE_URL"]
        .replace("http://localstack:4566/", good.endpoint().as_str());
    let sqs_in = async |region: &str| {
        let settings = pipeline_core::settings::AwsSettings {
            region: Some(region.into()),
            endpoint_url: Some(good.endpoint().clone()),
            endpoint_url_s3: None,
            endpoint_url_sqs: None,
        };
        let clients = AwsClients::new(&settings).await.unwrap();
        clients
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
    };
    let arn = sqs_in(region)
        .await
        .expect("the queue, in the services' region");
    assert!(
        arn.attributes.unwrap()[&QueueAttributeName::QueueArn].contains(":eu-west-1:"),
        "created in eu-west-1"
    );
    assert!(sqs_in("us-east-1").await.is_err(), "not in another region");

    // The hook failed: LocalStack still calls its ready stage completed,
    // which the old check took for ready; the healthcheck does not.
    let stage = bad.wait_for_ready_stage().await;
    assert_eq!(stage["completed"], true, "{stage}");
    assert_eq!(stage["scripts"][0]["state"], "ERROR", "{stage}");
    let check = localstack_healthcheck(bad.endpoint());
    assert!(!check.status.success());
    assert_eq!(
        String::from_utf8_lossy(&check.stderr).trim(),
        "init hook not done: 10-pipeline-resources.sh is ERROR"
    );
}
