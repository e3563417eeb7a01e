//! Keeping the raw bytes in S3.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use pipeline_core::contract::metadata as meta;
use pipeline_core::object::ObjectRef;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;
use uuid::Uuid;

use crate::body::Body;

/// What is archived along with the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub source_url: &'a Url,
    pub fetched_at: OffsetDateTime,
    pub record_count: u64,
    /// What the records are: `posts`.
    pub resource: &'a str,
    /// W3C trace context of the archiving span (`traceparent`, ...).
    pub trace: &'a HashMap<String, String>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An S3 call on `object` that failed: archiving a page, removing it, or
/// reading or writing its page state. The SDK's (or the I/O) error stays
/// the typed source; the one line is made where it is logged, with
/// `pipeline_core::error_chain`.
#[derive(Debug, thiserror::Error)]
#[error("{doing} {object}")]
pub struct ArchiveError {
    /// `could not archive to`, `could not remove`, `cannot read` ...
    doing: &'static str,
    pub object: ObjectRef,
    #[source]
    source: BoxError,
}

impl ArchiveError {
    pub(crate) fn new<'a>(
        doing: &'static str,
        object: &'a ObjectRef,
    ) -> impl Fn(BoxError) -> Self + 'a {
        move |source| Self {
            doing,
            object: object.clone(),
            source,
        }
    }
}

/// The step of an upload that failed, around the error it failed with.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
struct StepError {
    step: String,
    #[source]
    source: BoxError,
}

fn step<E: Into<BoxError>>(step: impl Into<String>) -> impl FnOnce(E) -> BoxError {
    let step = step.into();
    move |source| {
        Box::new(StepError {
            step,
            source: source.into(),
        })
    }
}

/// A new key for one fetch: `<prefix>/YYYY/MM/DD/<UUIDv7>.json`.
///
/// UUIDv7 starts with the time in milliseconds, so keys sort by fetch time
/// and never collide, even between overlapping runs.
pub fn object_key(prefix: &str, fetched_at: OffsetDateTime) -> String {
    let date = fetched_at.date();
    let id = Uuid::now_v7();
    format!(
        "{prefix}/{:04}/{:02}/{:02}/{id}.json",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Puts `body` at `object`, unchanged or gzip-compressed
/// (`Content-Encoding: gzip`). `sha256` is of `body` as the API sent it;
/// S3 verifies a checksum of what it stores before it stores anything.
///
/// A body in memory is one PUT; a body in a file is a multipart upload of
/// [`PART_BYTES`] parts, read from the file one part at a time, so memory
/// stays bounded whatever the size. A failed multipart upload is aborted:
/// no object appears.
pub async fn put(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    body: &Body,
    sha256: &str,
    provenance: Provenance<'_>,
    gzip: bool,
) -> Result<(), ArchiveError> {
    let failed = ArchiveError::new("could not archive to", object);
    let metadata = Metadata::new(sha256, provenance);
    match body {
        Body::Memory(bytes) => {
            let stored = if gzip {
                let mut encoder =
                    GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
                encoder
                    .write_all(bytes)
                    .and_then(|()| encoder.finish())
                    .map(Bytes::from)
                    .map_err(|e| failed(step("compressing")(e)))?
            } else {
                bytes.clone()
            };
            // Uncompressed, the stored bytes are the API's: their digest is
            // known already, and hashing 1 MB again is not free.
            let checksum = match hex::decode(sha256) {
                Ok(digest) if !gzip => BASE64.encode(digest),
                _ => BASE64.encode(Sha256::digest(&stored)),
            };
            let mut request = s3
                .put_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .content_type("application/json")
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(checksum)
                .set_metadata(Some(metadata.0));
            if gzip {
                request = request.content_encoding("gzip");
            }
            request
                .body(ByteStream::from(stored))
                // The checksum header above is signed and S3 verifies the
                // bytes against it, so signing the payload as well would
                // only hash every byte a second time.
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map(drop)
                .map_err(|e| failed(e.into()))
        }
        Body::File { .. } => {
            let reader = body
                .reader()
                .map_err(|e| failed(step("reading the body back")(e)))?;
            multipart(s3, object, reader, metadata, gzip)
                .await
                .map_err(failed)
        }
    }
}

/// Size of one part of a multipart upload. S3 wants at least 5 MiB; the
/// AWS CLI's default is 8 MiB (`multipart_chunksize`). Two parts are in
/// memory at a time: with 16 MiB parts and one more waiting in a channel,
/// a 1 GiB object peaked at 85 MiB.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// The object metadata every archived object carries.
struct Metadata(HashMap<String, String>);

impl Metadata {
    fn new(sha256: &str, provenance: Provenance<'_>) -> Self {
        let fetched_at = provenance
            .fetched_at
            .format(&Rfc3339)
            .unwrap_or_else(|e| unreachable!("formatting a UTC time: {e}"));
        Self(
            [
                (meta::SOURCE_URL, provenance.source_url.to_string()),
                (meta::FETCHED_AT, fetched_at),
                (meta::RECORD_COUNT, provenance.record_count.to_string()),
                (meta::RESOURCE, provenance.resource.to_owned()),
                (meta::SHA256, sha256.to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(provenance.trace.clone())
            .collect(),
        )
    }
}

async fn multipart(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    reader: Box<dyn Read + Send>,
    metadata: Metadata,
    gzip: bool,
) -> Result<(), BoxError> {
    let mut create = s3
        .create_multipart_upload()
        .bucket(&object.bucket)
        .key(&object.key)
        .content_type("application/json")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .set_metadata(Some(metadata.0));
    if gzip {
        create = create.content_encoding("gzip");
    }
    let upload_id = create
        .send()
        .await
        .map_err(step("starting a multipart upload"))?
        .upload_id
        .ok_or("S3 started a multipart upload but gave no upload id")?;
    match upload_parts(s3, object, &upload_id, reader, gzip).await {
        Ok(parts) => s3
            .complete_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(drop)
            .map_err(step("completing the multipart upload")),
        Err(reason) => {
            // Nothing may stay half-written.
            let _ = s3
                .abort_multipart_upload()
                .bucket(&object.bucket)
                .key(&object.key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(reason)
        }
    }
}

/// Reads the body part by part (compressing on the way when asked) on a
/// blocking thread, and uploads each part as it is ready. The next part is
/// read while one uploads, and no further: two parts in memory at most.
async fn upload_parts(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    upload_id: &str,
    reader: Box<dyn Read + Send>,
    gzip: bool,
) -> Result<Vec<CompletedPart>, BoxError> {
    let read_next = |mut parts: Parts| {
        tokio::task::spawn_blocking(move || {
            let part = parts.next_part();
            (parts, part)
        })
    };
    let mut reading = read_next(Parts::new(reader, gzip));
    let mut completed = Vec::new();
    loop {
        let (parts, part) = reading.await.map_err(step("reading the body back"))?;
        let Some(part) = part.map_err(step("reading the body back"))? else {
            break;
        };
        // On an error below, the read under way finishes on its own and is
        // dropped.
        reading = read_next(parts);
        let number = completed.len() as i32 + 1;
        let checksum = BASE64.encode(Sha256::digest(&part));
        let uploaded = s3
            .upload_part()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(part))
            // Covered by the signed checksum header, as for a single PUT.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(step(format!("uploading part {number}")))?;
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag)
                .checksum_sha256(checksum)
                .build(),
        );
    }
    Ok(completed)
}

/// A body cut into parts of [`PART_BYTES`], gzip-compressed on the way
/// when asked. Reading blocks: call [`Parts::next_part`] off the runtime.
struct Parts {
    reader: Box<dyn Read + Send>,
    /// Compresses into the part being filled; `None` without gzip, and
    /// once finished.
    gzip: Option<GzEncoder<Vec<u8>>>,
    done: bool,
}

impl Parts {
    fn new(reader: Box<dyn Read + Send>, gzip: bool) -> Self {
        Self {
            reader,
            gzip: gzip.then(|| GzEncoder::new(Vec::with_capacity(PART_BYTES), Compression::fast())),
            done: false,
        }
    }

    /// The next part, or `None` after the last.
    fn next_part(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let part = match &mut self.gzip {
            None => {
                // Read straight into the part, never past its size.
                let mut part = Vec::with_capacity(PART_BYTES);
                (&mut self.reader)
                    .take(PART_BYTES as u64)
                    .read_to_end(&mut part)?;
                self.done = part.len() < PART_BYTES;
                part
            }
            Some(encoder) => {
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let n = self.reader.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    encoder.write_all(&chunk[..n])?;
                    if encoder.get_ref().len() >= PART_BYTES {
                        let full =
                            std::mem::replace(encoder.get_mut(), Vec::with_capacity(PART_BYTES));
                        return Ok(Some(Bytes::from(full)));
                    }
                }
                self.done = true;
                match self.gzip.take() {
                    Some(encoder) => encoder.finish()?,
                    None => Vec::new(),
                }
            }
        };
        Ok((!part.is_empty()).then(|| Bytes::from(part)))
    }
}

/// Removes an object that could not be announced, so that nothing stays
/// archived that the transformer was never told about.
pub async fn remove(s3: &aws_sdk_s3::Client, object: &ObjectRef) -> Result<(), ArchiveError> {
    s3.delete_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map(drop)
        .map_err(|e| ArchiveError::new("could not remove", object)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn all_parts(data: &[u8], gzip: bool) -> Vec<Bytes> {
        let mut parts = Parts::new(Box::new(std::io::Cursor::new(data.to_vec())), gzip);
        std::iter::from_fn(|| parts.next_part().unwrap()).collect()
    }

    #[test]
    fn parts_are_cut_at_the_part_size_and_put_back_together() {
        let data: Vec<u8> = (0..PART_BYTES * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let parts = all_parts(&data, false);
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [PART_BYTES, PART_BYTES, 12345]
        );
        assert_eq!(parts.concat(), data);

        // A body that ends at a part's end has no empty part after it.
        let exact = all_parts(&data[..PART_BYTES * 2], false);
        assert_eq!(
            exact.iter().map(Bytes::len).collect::<Vec<_>>(),
            [PART_BYTES, PART_BYTES]
        );

        let gzipped = all_parts(&data, true);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzipped.concat()[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, data);
    }

    #[test]
    fn keys_are_dated_and_sort_by_time() {
        let at = datetime!(2026-11-06 08:00 UTC);
        let first = object_key("posts", at);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = object_key("posts", at);
        assert!(
            first.starts_with("posts/2026/11/06/") && first.ends_with(".json"),
            "{first}"
        );
        assert!(first < second, "{first} then {second}");
    }
}
