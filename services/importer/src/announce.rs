//! Telling the transformer that an object is ready.

use aws_sdk_sqs::types::MessageAttributeValue;
use pipeline_core::aws::describe;
use pipeline_core::message::{MESSAGE_VERSION, ObjectMessage};
use pipeline_core::object::ObjectRef;
use url::Url;

#[derive(Debug, thiserror::Error)]
#[error("archived {object} but could not announce it on {queue_url}: {reason}")]
pub struct AnnounceError {
    pub object: ObjectRef,
    pub queue_url: Url,
    pub reason: String,
}

/// Sends one message for one archived object and returns its message id.
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &Url,
    message: &ObjectMessage,
) -> Result<String, AnnounceError> {
    let failed = |reason: String| AnnounceError {
        object: message.object(),
        queue_url: queue_url.clone(),
        reason,
    };
    let attribute = |value: String| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .unwrap_or_else(|e| unreachable!("data type and value are set: {e}"))
    };
    let output = sqs
        .send_message()
        .queue_url(queue_url.as_str())
        .message_body(message.encode())
        // Lets consumers route or filter without parsing the body.
        .message_attributes("content_type", attribute("application/json".into()))
        .message_attributes("schema_version", attribute(MESSAGE_VERSION.to_string()))
        .send()
        .await
        .map_err(|e| failed(describe(&e)))?;
    Ok(output.message_id.unwrap_or_default())
}
