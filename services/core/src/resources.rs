//! A resource as the pipeline handles it: reading its records from bytes,
//! as its entry in the resources file says ([`crate::spec`]).
//!
//! Nothing in the services names a resource. Fetching, archiving, the
//! message, the queue, streaming, quarantine, dead letters, telemetry and
//! the operator commands handle any resource through [`Resource`]; the
//! resources file (`RESOURCES_FILE`, or the built-in one) says which there
//! are.

use std::fmt;

use crate::record::RecordsError;
use crate::spec::ResourceSpec;
use crate::spec::body::{SpecRecords, read_body, scan_body};

/// The records of one object, or of part of one: the valid ones in typed
/// columns, the others with their reasons.
pub type Batch = SpecRecords;

/// A resource as the pipeline handles it. [`ResourceSpec`] is the one
/// implementation; the trait is the seam a test uses to make reading fail
/// in ways no input can.
pub trait Resource: Send + Sync + fmt::Debug {
    /// Its entry in the resources file: its table, key and columns.
    fn spec(&self) -> &ResourceSpec;

    /// As messages and object metadata carry it.
    fn name(&self) -> &str {
        &self.spec().name
    }

    /// The records of a whole body.
    fn parse(&self, body: &[u8]) -> Result<Batch, RecordsError>;

    /// Reads a body record by record, handing its records to `on_batch`
    /// whenever `batch_records` have come (valid or bad), and once more at
    /// the end, so that memory holds one batch however large the body.
    /// Returns the number of records.
    fn scan(
        &self,
        reader: &mut dyn std::io::Read,
        batch_records: usize,
        on_batch: &mut dyn FnMut(Batch),
    ) -> Result<u64, RecordsError>;
}

impl Resource for ResourceSpec {
    fn spec(&self) -> &ResourceSpec {
        self
    }

    fn parse(&self, body: &[u8]) -> Result<Batch, RecordsError> {
        read_body(self, body)
    }

    fn scan(
        &self,
        reader: &mut dyn std::io::Read,
        batch_records: usize,
        on_batch: &mut dyn FnMut(Batch),
    ) -> Result<u64, RecordsError> {
        scan_body(self, reader, batch_records, on_batch)
    }
}

#[cfg(test)]
mod tests;
