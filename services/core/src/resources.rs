//! The resources this pipeline knows, by name: the one list to extend when
//! adding one (`docs/adding-a-resource.md`).
//!
//! Everything else (fetching, archiving, the message, the queue, streaming,
//! quarantine, dead letters, telemetry, the operator commands) handles any
//! resource through [`Resource`], without knowing which one it is.

pub mod comments;
pub mod posts;

use crate::record::{Batch, Record, Records, RecordsError, parse_records, scan_records};
use std::fmt;
use std::marker::PhantomData;

pub use comments::Comment;
pub use posts::Post;

/// Every resource, by its name.
pub static ALL: &[&dyn Resource] = &[&Of::<Post>::NEW, &Of::<Comment>::NEW];

/// The resource called `name`.
pub fn named(name: &str) -> Option<&'static dyn Resource> {
    ALL.iter().copied().find(|resource| resource.name() == name)
}

/// The names of [`ALL`], for messages: `posts, comments`.
pub fn names() -> String {
    ALL.iter()
        .map(|resource| resource.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A resource as the pipeline handles it: reading its records from bytes.
/// Implemented once, by [`Of`], for every [`Record`] type.
pub trait Resource: Send + Sync + fmt::Debug {
    /// As messages and object metadata carry it.
    fn name(&self) -> &'static str;

    /// The records of a whole body that must be a JSON array.
    fn parse(&self, body: &[u8]) -> Result<Batch, RecordsError>;

    /// Reads a JSON array element by element, handing its records to
    /// `on_batch` whenever `batch_records` have come (valid or bad), and
    /// once more at the end, so that memory holds one batch however large
    /// the array. Returns the number of elements.
    fn scan(
        &self,
        reader: &mut dyn std::io::Read,
        batch_records: usize,
        on_batch: &mut dyn FnMut(Batch),
    ) -> Result<u64, RecordsError>;

    /// The number of elements if `body` is a JSON array of valid records.
    fn count_if_all_valid(&self, body: &[u8]) -> Option<u64>;
}

/// The [`Resource`] whose records are `R`s.
pub struct Of<R>(PhantomData<fn() -> R>);

impl<R> Of<R> {
    pub const NEW: Self = Self(PhantomData);
}

impl<R: Record> fmt::Debug for Of<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resource({})", R::RESOURCE)
    }
}

impl<R: Record> Resource for Of<R> {
    fn name(&self) -> &'static str {
        R::RESOURCE
    }

    fn parse(&self, body: &[u8]) -> Result<Batch, RecordsError> {
        parse_records::<R>(body).map(Records::into_batch)
    }

    fn scan(
        &self,
        reader: &mut dyn std::io::Read,
        batch_records: usize,
        on_batch: &mut dyn FnMut(Batch),
    ) -> Result<u64, RecordsError> {
        let mut batch = Records::<R>::default();
        let scanned = scan_records::<R, _>(reader, |record| {
            match record {
                Ok(row) => batch.rows.push(row),
                Err(bad) => batch.bad.push(bad),
            }
            if batch.total() >= batch_records {
                on_batch(std::mem::take(&mut batch).into_batch());
            }
        });
        on_batch(batch.into_batch());
        scanned
    }

    fn count_if_all_valid(&self, body: &[u8]) -> Option<u64> {
        R::count_if_all_valid(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_found_by_its_name_and_names_are_unique() {
        for resource in ALL {
            let found = named(resource.name()).expect("listed");
            assert_eq!(found.name(), resource.name());
        }
        let mut names: Vec<_> = ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(named("users").is_none());
        assert_eq!(names.join(", "), super::names());
    }

    #[test]
    fn scanning_hands_over_batches_of_the_size_asked_and_one_at_the_end() {
        let post = r#"{"userId":1,"id":1,"title":"t","body":"b"}"#;
        let body = format!("[{post},{post},7,{post},{post}]");
        let mut sizes = Vec::new();
        let count = named("posts")
            .expect("posts")
            .scan(&mut body.as_bytes(), 2, &mut |batch| {
                sizes.push((batch.rows.len(), batch.bad.len()))
            })
            .expect("an array");
        assert_eq!(count, 5);
        assert_eq!(sizes, [(2, 0), (1, 1), (1, 0)]);
    }
}
