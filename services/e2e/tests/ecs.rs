//! The ECS task definitions in `ecs/pipeline.yaml` set only environment
//! variables their binary reads, and each binary gets the settings it
//! cannot start without: the template cannot be deployed here, but a
//! misspelt or forgotten setting would show on the first deployment.

#![allow(clippy::unwrap_used)]

use clap::CommandFactory;
use e2e::{unknown, variables_read};
use std::collections::BTreeSet;
use testkit::compose::workspace;
use yaml_rust2::{Yaml, YamlLoader};

/// Each task definition's containers, by name, with the names of the
/// variables they set or may set. CloudFormation's short-form tags (`!Ref`, `!Sub`)
/// are read as their plain values, which is all the names need.
fn task_environments() -> Vec<(String, String, BTreeSet<String>)> {
    let text = std::fs::read_to_string(workspace().join("ecs/pipeline.yaml")).unwrap();
    let template = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let Yaml::Hash(resources) = &template["Resources"] else {
        panic!("no Resources")
    };
    let mut found = Vec::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::ECS::TaskDefinition") {
            continue;
        }
        for container in resource["Properties"]["ContainerDefinitions"]
            .as_vec()
            .unwrap()
        {
            let env = container["Environment"]
                .as_vec()
                .map(|vars| {
                    vars.iter()
                        // `!If [Condition, {Name, Value}, !Ref AWS::NoValue]`:
                        // the variable it may set.
                        .map(|var| match var.as_vec() {
                            Some(condition) => &condition[1],
                            None => var,
                        })
                        .map(|var| var["Name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            found.push((
                name.as_str().unwrap().to_owned(),
                container["Name"].as_str().unwrap().to_owned(),
                env,
            ));
        }
    }
    found
}

#[test]
fn every_variable_a_task_definition_sets_is_one_its_binary_reads() {
    let importer = variables_read(&importer::settings::Cli::command());
    let transformer = variables_read(&transformer::settings::Cli::command());
    let containers = task_environments();
    let names: BTreeSet<&str> = containers.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "collector",
            "importer",
            "migrate",
            "operator",
            "transformer"
        ])
    );
    for (task, container, env) in &containers {
        let reads = match container.as_str() {
            "importer" => &importer,
            "transformer" | "migrate" | "operator" => &transformer,
            // The collector's AWS_REGION is the AWS SDK's, read by its exporters.
            _ => continue,
        };
        let unknown = unknown(env, reads);
        assert!(
            unknown.is_empty(),
            "{task} sets {unknown:?} on {container}, which its binary does not read"
        );
    }
}

#[test]
fn each_service_gets_what_it_cannot_start_without() {
    let needs: &[(&str, &[&str])] = &[
        (
            "importer",
            &["AWS_REGION", "RAW_BUCKET", "QUEUE_URL", "SOURCE_URL"],
        ),
        (
            "transformer",
            &["AWS_REGION", "QUEUE_URL", "DATABASE_URL", "DATABASE_SECRET"],
        ),
        (
            "migrate",
            &["AWS_REGION", "DATABASE_URL", "DATABASE_SECRET"],
        ),
        // status by default, redrive and quarantine by override.
        (
            "operator",
            &[
                "AWS_REGION",
                "QUEUE_URL",
                "DEAD_LETTER_QUEUE_URL",
                "DATABASE_URL",
                "DATABASE_SECRET",
            ],
        ),
    ];
    let containers = task_environments();
    for (container, required) in needs {
        let (_, _, env) = containers.iter().find(|(_, c, _)| c == container).unwrap();
        for name in *required {
            assert!(env.contains(*name), "{container} gets no {name}");
        }
    }
}
