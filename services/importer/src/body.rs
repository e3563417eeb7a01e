//! The bytes of one page: in memory while small, in a temporary file once
//! large, with the SHA-256 computed on the way in. Memory stays bounded
//! whatever the size of an answer.

use bytes::{Bytes, BytesMut};
use pipeline_core::record::RecordsError;
use pipeline_core::resources::{Batch, Resource};
use sha2::{Digest, Sha256};

use crate::position::Position;
use pipeline_core::spec::read::Buffer;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};

/// Beyond this, a body goes to a temporary file.
pub const SPILL_BYTES: usize = 8 * 1024 * 1024;

/// A whole body, as the API sent it.
#[derive(Debug)]
pub enum Body {
    Memory(Bytes),
    /// An unlinked temporary file: it disappears with the handle.
    File {
        file: std::fs::File,
        len: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader over the whole body, from its start (blocking I/O).
    pub fn reader(&self) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            Self::Memory(bytes) => Ok(Box::new(std::io::Cursor::new(bytes.clone()))),
            Self::File { file, .. } => {
                let mut file = file.try_clone()?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
            }
        }
    }
}

/// What checking a body found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub record_count: u64,
    pub bad_records: u64,
    /// Why the first bad record is bad, e.g. ``record 3: field `id`: ...``.
    pub first_bad: Option<String>,
    /// With incremental loading: the largest value of the cursor field.
    pub position: Option<Position>,
    /// For a parent resource: the values of the column its children are
    /// fetched for, as text.
    pub keys: Vec<String>,
}

/// Checks that a body is a JSON array, counting its elements and the ones
/// that are not valid records of `resource`. A large body is read back from its file one
/// element at a time. The work is done on a blocking thread: a page of
/// 1 MB takes milliseconds to check, which the runtime's threads spend
/// better on the transfers in flight.
pub async fn check(
    body: &Body,
    resource: &'static dyn Resource,
    keys: Option<usize>,
) -> Result<Checked, RecordsError> {
    let joined = |e: tokio::task::JoinError| RecordsError::Encoding(e.to_string());
    match body {
        Body::Memory(bytes) => {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || {
                resource
                    .parse(&bytes)
                    .map(|batch| summary(&batch, resource, keys))
            })
            .await
            .map_err(joined)?
        }
        Body::File { .. } => {
            let mut reader = body
                .reader()
                .map_err(|e| RecordsError::Encoding(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let mut checked = Checked::default();
                // Small batches: only the count of bad ones is kept.
                let count = resource.scan(&mut reader, 64, &mut |batch| {
                    let mut first = summary(&batch, resource, keys);
                    checked.keys.append(&mut first.keys);
                    checked.bad_records += first.bad_records;
                    checked.first_bad = checked.first_bad.take().or(first.first_bad);
                    checked.position = Position::larger(checked.position.take(), first.position);
                })?;
                checked.record_count = count;
                Ok(checked)
            })
            .await
            .map_err(joined)?
        }
    }
}

/// The values at `pointers` in a body, read on a blocking thread: what a
/// page says about the next one (a cursor, a URL, a total).
pub async fn values_at(
    body: &Body,
    pointers: Vec<String>,
) -> Result<Vec<Option<serde_json::Value>>, String> {
    if pointers.is_empty() {
        return Ok(Vec::new());
    }
    let readers = pointers
        .iter()
        .map(|_| body.reader())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot read the body back: {e}"))?;
    tokio::task::spawn_blocking(move || {
        pointers
            .iter()
            .zip(readers)
            .map(|(pointer, reader)| {
                pipeline_core::spec::body::value_at(reader, pointer)
                    .map_err(|e| format!("reading {pointer} of the body: {e}"))
            })
            .collect()
    })
    .await
    .map_err(|e| e.to_string())?
}

fn summary(records: &Batch, resource: &dyn Resource, keys: Option<usize>) -> Checked {
    let cursor = resource.spec().incremental.as_ref().map(|i| i.column);
    Checked {
        keys: keys.map_or_else(Vec::new, |i| key_texts(&records.columns.buffers[i])),
        position: cursor.and_then(|i| Position::max_of(&records.columns.buffers[i])),
        record_count: records.total() as u64,
        bad_records: records.bad.len() as u64,
        first_bad: records
            .bad
            .first()
            .map(|b| format!("record {}: {}", b.index, b.reason)),
    }
}

/// A key column's values as text, as they go into a child's URL.
fn key_texts(buffer: &Buffer) -> Vec<String> {
    match buffer {
        Buffer::BigInt(v) => v.iter().flatten().map(ToString::to_string).collect(),
        Buffer::Integer(v) => v.iter().flatten().map(ToString::to_string).collect(),
        Buffer::Text(v) => v.iter().flatten().cloned().collect(),
        Buffer::Uuid(v) => v.iter().flatten().map(ToString::to_string).collect(),
        // The file allows no other type.
        _ => Vec::new(),
    }
}

/// Collects a body chunk by chunk.
#[derive(Debug)]
pub struct BodyWriter {
    buffer: BytesMut,
    file: Option<std::fs::File>,
    len: u64,
    hasher: Sha256,
}

impl Default for BodyWriter {
    fn default() -> Self {
        Self {
            buffer: BytesMut::new(),
            file: None,
            len: 0,
            hasher: Sha256::new(),
        }
    }
}

impl BodyWriter {
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        match &mut self.file {
            // Writes to a fresh temporary file land in the page cache: cheap
            // enough not to need a thread of their own.
            Some(file) => file.write_all(chunk),
            None if self.buffer.len() + chunk.len() > SPILL_BYTES => {
                let mut file = tempfile::tempfile()?;
                file.write_all(&self.buffer)?;
                file.write_all(chunk)?;
                self.buffer = BytesMut::new();
                self.file = Some(file);
                Ok(())
            }
            None => {
                self.buffer.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    /// The body and the lowercase hex SHA-256 of its bytes.
    pub fn finish(self) -> std::io::Result<(Body, String)> {
        let sha256 = pipeline_core::contract::finish_sha256(self.hasher);
        let body = match self.file {
            Some(mut file) => {
                file.flush()?;
                Body::File {
                    file,
                    len: self.len,
                }
            }
            None => Body::Memory(self.buffer.freeze()),
        };
        Ok((body, sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posts() -> &'static dyn Resource {
        pipeline_core::spec::Spec::shared_built_in()
            .resource("posts")
            .unwrap()
    }

    #[tokio::test]
    async fn large_bodies_spill_to_a_file_and_read_back_the_same() {
        let post = br#"{"userId":1,"id":1,"title":"t","body":"b"},"#;
        let mut expected = b"[".to_vec();
        let mut writer = BodyWriter::default();
        writer.write(b"[").unwrap();
        while expected.len() < SPILL_BYTES + 1000 {
            writer.write(post).unwrap();
            expected.extend_from_slice(post);
        }
        writer.write(b"7]").unwrap();
        expected.extend_from_slice(b"7]");

        let (body, sha256) = writer.finish().unwrap();

        assert!(matches!(body, Body::File { .. }));
        assert_eq!(body.len(), expected.len() as u64);
        assert_eq!(sha256, hex::encode(Sha256::digest(&expected)));
        let mut read_back = Vec::new();
        body.reader().unwrap().read_to_end(&mut read_back).unwrap();
        assert_eq!(read_back, expected);
        let checked = check(&body, posts(), None).await.unwrap();
        assert_eq!(
            checked.record_count as usize,
            (expected.len() - 3) / post.len() + 1
        );
        assert_eq!(checked.bad_records, 1);
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory() {
        let mut writer = BodyWriter::default();
        writer.write(b"[]").unwrap();
        let (body, _) = writer.finish().unwrap();
        assert!(matches!(body, Body::Memory(_)));
        assert_eq!(check(&body, posts(), None).await.unwrap().record_count, 0);
    }
}
