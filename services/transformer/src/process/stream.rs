//! Reading a large object as it streams: a blocking `Read` over the chunks
//! the async S3 reader sends, hashed as it passes, parsed element by
//! element into batches.

use bytes::Bytes;
use pipeline_core::contract::finish_sha256;
use pipeline_core::record::RecordsError;
use pipeline_core::resources::Resource;
use pipeline_store::ledger::{Batch, StreamEnd};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use tokio::sync::mpsc;

/// Records per batch when an object is streamed: a batch is held about
/// four times over (parsed, bound, on the wire), so 5,000 posts of 1.1 kB
/// cost tens of MiB; 1,000 is the size of a page, whose statements run as
/// fast per row.
const STREAM_BATCH: usize = 1_000;

/// Parses a streamed object on a blocking thread, sending its records in
/// batches of [`STREAM_BATCH`]; returns how its bytes ended.
pub(super) fn parse_stream(
    resource: &dyn Resource,
    chunks: mpsc::Receiver<Bytes>,
    gzip: bool,
    batches: mpsc::Sender<Batch>,
) -> Result<StreamEnd, RecordsError> {
    let input = ChannelReader::new(chunks);
    let abandoned = input.abandoned();
    let input: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut hashing = HashingReader::new(input);
    let scanned = resource.scan(&mut hashing, STREAM_BATCH, &mut |batch: Batch| {
        if batches.blocking_send(batch).is_err() {
            // The transaction gave up (database error, lost heartbeat): make
            // the next read fail, which ends the parse.
            abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    drop(batches);
    Ok(StreamEnd {
        records: scanned?,
        sha256: hashing.finish(),
    })
}

/// A blocking `Read` over chunks sent from async code.
struct ChannelReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
    abandoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ChannelReader {
    fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            abandoned: Default::default(),
        }
    }

    /// Set it to make the next read fail.
    fn abandoned(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        std::sync::Arc::clone(&self.abandoned)
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("abandoned"));
        }
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Hashes what goes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> String {
        finish_sha256(self.hasher)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
