//! The local stack's compose file, read for tests that check its wiring
//! without Docker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// The root of the workspace.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The compose file's services, with YAML merge keys (`<<: *anchor`) applied.
pub fn services() -> BTreeMap<String, Yaml> {
    let text = std::fs::read_to_string(workspace().join("docker-compose.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let services = merged(&doc["services"]);
    let Yaml::Hash(services) = services else {
        panic!("docker-compose.yml has no services")
    };
    services
        .into_iter()
        .map(|(name, service)| (name.as_str().unwrap().to_owned(), service))
        .collect()
}

fn merged(node: &Yaml) -> Yaml {
    match node {
        Yaml::Hash(map) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = map.get(&Yaml::String("<<".into()))
                && let Yaml::Hash(base) = merged(base)
            {
                out.extend(base);
            }
            for (key, value) in map {
                if key.as_str() != Some("<<") {
                    out.insert(key.clone(), merged(value));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.iter().map(merged).collect()),
        other => other.clone(),
    }
}

/// A service's environment, with `${NAME:-default}` replaced by its default.
pub fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let Yaml::Hash(env) = &service["environment"] else {
        return BTreeMap::new();
    };
    env.iter()
        .map(|(key, value)| {
            let value = match value {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{key:?} has a value that is not a scalar: {other:?}"),
            };
            (key.as_str().unwrap().to_owned(), with_defaults(&value))
        })
        .collect()
}

fn with_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${...}") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Runs a service's command with exactly the compose environment, its hosts
/// pointed at closed local ports: settings that are missing or malformed
/// fail with exit 2 before any connection; complete ones get as far as
/// connecting, and fail there.
pub fn run_with_compose_env(binary: &str, service: &Yaml) -> (i32, String) {
    let mut env = environment(service);
    for value in env.values_mut() {
        *value = value
            .replace("//localstack:4566", "//127.0.0.1:9")
            .replace("@postgres:5432", "@127.0.0.1:9")
            .replace("//jaeger:4318", "//127.0.0.1:9");
    }
    let args: Vec<&str> = service["command"]
        .as_vec()
        .expect("an exec-form command")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let output = Command::new(binary)
        .args(&args)
        .env_clear()
        .envs(&env)
        .env(
            "HEALTH_FILE",
            std::env::temp_dir().join("compose-test.healthy"),
        )
        // Nothing will ever answer on those ports: try once.
        .env("STARTUP_WAIT", "0s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}
