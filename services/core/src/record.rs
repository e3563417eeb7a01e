//! What is said of records whatever their resource: why a body holds none
//! that can be loaded ([`RecordsError`]), and a record that cannot be
//! loaded, kept as sent ([`BadRecord`]). How records are read is
//! [`crate::spec::body`]'s, by what the resources file says.

/// Why a body is not a JSON array at all. The message says where in the
/// body; nothing in such a body can be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("the body is empty")]
    Empty,
    #[error("{0}")]
    Encoding(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// A record that is not valid, kept so it can be fixed and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Position in the array, from 0.
    pub index: usize,
    /// What is wrong, naming the column and the JSON pointer at fault, e.g.
    /// ``column `id` (/id): 0 is less than the minimum 1``.
    pub reason: String,
    /// The record's JSON text exactly as it appears in the object.
    pub raw: String,
}

/// serde_json's message without its "at line 1 column N": noise in a
/// reason about one record.
pub(crate) fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// Notes whether anything but whitespace went through, to tell an empty
/// body from a broken one.
pub(crate) struct SeenReader<R> {
    inner: R,
    seen: bool,
}

impl<R> SeenReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, seen: false }
    }

    /// Whether anything but whitespace went through.
    pub(crate) fn seen(&self) -> bool {
        self.seen
    }
}

impl<R: std::io::Read> std::io::Read for SeenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.seen {
            self.seen = buf[..n].iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(n)
    }
}
