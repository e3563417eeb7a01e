//! The record of what was last archived for each page, for
//! `SKIP_UNCHANGED`.

use aws_sdk_s3::primitives::ByteStream;
use pipeline_core::contract::sha256_hex;
use pipeline_core::object::ObjectRef;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::archive::ArchiveError;

/// What was last archived and announced for one page URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastArchived {
    pub source_url: String,
    pub sha256: String,
    pub key: String,
}

/// The last archived sha256 of each page URL, kept in the bucket under
/// `_state/<prefix>/`: an ECS task starts with an empty disk, and every
/// overlapping run sees the same state.
#[derive(Debug, Clone)]
pub struct PageState {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl PageState {
    pub fn new(s3: aws_sdk_s3::Client, bucket: String, key_prefix: &str) -> Self {
        Self {
            s3,
            bucket,
            prefix: format!("_state/{key_prefix}"),
        }
    }

    fn object(&self, page_url: &Url) -> ObjectRef {
        let key = format!(
            "{}/{}.json",
            self.prefix,
            &sha256_hex(page_url.as_str().as_bytes())[..32]
        );
        ObjectRef::new(&self.bucket, key)
    }

    /// What was last archived for `page_url`, if anything.
    pub async fn get(&self, page_url: &Url) -> Result<Option<LastArchived>, ArchiveError> {
        get_json(&self.s3, &self.object(page_url)).await
    }

    /// Records what was just archived and announced for a page.
    pub async fn put(&self, page_url: &Url, last: &LastArchived) -> Result<(), ArchiveError> {
        put_json(&self.s3, &self.object(page_url), last).await
    }
}

/// The JSON object at `object`, if there is one. One that does not parse
/// is as good as none: whatever it recorded is done again.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
) -> Result<Option<T>, ArchiveError> {
    let failed = ArchiveError::new("cannot read", object);
    let output = match s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
    {
        Ok(output) => output,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            return Ok(None);
        }
        Err(e) => return Err(failed(e.into())),
    };
    let bytes = match output.body.collect().await {
        Ok(body) => body.into_bytes(),
        Err(e) => return Err(failed(e.into())),
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Writes `value` as JSON to `object`.
pub(crate) async fn put_json<T: Serialize>(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    value: &T,
) -> Result<(), ArchiveError> {
    let body = serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("plain data: {e}"));
    s3.put_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await
        .map(drop)
        .map_err(|e| ArchiveError::new("cannot write", object)(e.into()))
}
