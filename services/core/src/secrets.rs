//! Secrets a resources file names as `${secretsmanager:ID}` or
//! `${secretsmanager:ID#KEY}`, read from AWS Secrets Manager once, when the
//! importer starts, so that no credential is ever part of the file, the
//! image or the task definition: the task's role is allowed to read them.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::aws::{AwsClients, check_secret};
use crate::settings::{AwsSettings, or_exit};
use crate::spec::Spec;
use crate::spec::request::Ref;

/// A Secrets Manager client with the region, credentials and endpoint of
/// `aws`.
pub fn client(aws: &AwsClients) -> aws_sdk_secretsmanager::Client {
    let mut config = aws_sdk_secretsmanager::config::Builder::from(&aws.shared);
    if let Some(endpoint) = aws.endpoint_str() {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_secretsmanager::Client::from_conf(config.build())
}

/// The value at `key` of a secret that holds JSON, or the whole text
/// without a key. Errors never quote the text.
pub fn value_of(text: &str, key: Option<&str>) -> Result<String, String> {
    let Some(key) = key else {
        return Ok(text.to_owned());
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format!("it holds no JSON, so no key {key}"))?;
    json.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("its JSON has no string {key:?}"))
}

/// The values of the secrets a resources file names, by id and key.
#[derive(Default)]
pub struct Secrets(HashMap<(String, Option<String>), String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// The value `r` names, if it is a secret that was read.
    pub fn get(&self, r: &Ref<'_>) -> Option<String> {
        match r {
            Ref::Secret { id, key } => self
                .0
                .get(&((*id).to_owned(), key.map(str::to_owned)))
                .cloned(),
            Ref::Env(_) => None,
        }
    }

    /// Reads every secret `resources` names, each once. Before the
    /// service's own runtime, as the resources file is; a secret that
    /// cannot be read ends the service (exit 1), in one line naming it.
    pub fn read_or_exit(resources: &Spec, aws: &AwsSettings, wait: Duration) -> Self {
        let refs: BTreeSet<Ref<'_>> = resources
            .resources
            .iter()
            .flat_map(|r| {
                let initial = r.incremental.iter().filter_map(|i| i.initial.as_ref());
                r.request.templates().into_iter().chain(initial)
            })
            .flat_map(|t| t.refs())
            .filter(|r| matches!(r, Ref::Secret { .. }))
            .collect();
        if refs.is_empty() {
            return Self::default();
        }
        let read_all = async {
            let aws = or_exit(AwsClients::new(aws).await);
            let client = client(&aws);
            let mut texts: HashMap<&str, String> = HashMap::new();
            let mut values = HashMap::new();
            for r in &refs {
                let Ref::Secret { id, key } = *r else {
                    continue;
                };
                let unusable =
                    |reason: String| format!("the Secrets Manager secret {id}: {reason}");
                if !texts.contains_key(id) {
                    let text = check_secret(&aws, &client, id, wait)
                        .await
                        .map_err(|e| crate::error_chain(&e))?
                        .ok_or_else(|| unusable("it holds binary data, not text".into()))?;
                    texts.insert(id, text);
                }
                let value = value_of(&texts[id], key).map_err(unusable)?;
                values.insert((id.to_owned(), key.map(str::to_owned)), value);
            }
            Ok::<_, String>(Self(values))
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|runtime| runtime.block_on(read_all))
            .unwrap_or_else(|reason| {
                eprintln!("error: {reason}");
                std::process::exit(1)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_read_from_json_and_errors_never_quote_the_text() {
        assert_eq!(value_of("s3cret", None).unwrap(), "s3cret");
        assert_eq!(
            value_of(r#"{"token": "s3cret"}"#, Some("token")).unwrap(),
            "s3cret"
        );
        let missing = value_of(r#"{"tok": "s3cret"}"#, Some("token")).unwrap_err();
        assert_eq!(missing, "its JSON has no string \"token\"");
        assert!(
            !value_of("s3cret", Some("token"))
                .unwrap_err()
                .contains("s3cret")
        );
    }
}
