//! Why an object could not be applied, and whether trying again can help.

use aws_sdk_s3::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStreamError;
use pipeline_core::message::MessageError;
use pipeline_core::object::ObjectRef;
use pipeline_core::record::RecordsError;
use pipeline_store::StoreError;
use tokio::task::JoinError;

/// Why a message or its object could not be applied. Every variant names
/// the object, and keeps its cause as a typed source: render it with
/// [`pipeline_core::error_chain`], which gives the whole chain on one line.
///
/// Whether trying again can help ([`ProcessError::is_permanent`]) is decided
/// from the cause's kind: S3's `NoSuchKey` and `NoSuchBucket`, the
/// database's constraint violations ([`StoreError::is_permanent`]), a parser
/// that panicked on these bytes. A permanent failure sends the message to
/// the dead-letter queue at once; any other is retried after a delay, and
/// the queue's redrive policy takes what keeps failing.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("message body is in no known format")]
    UnknownFormat {
        #[source]
        source: MessageError,
    },
    #[error(
        "the message says {object} holds `{resource}`, which {source_name} does not describe (it has {known})"
    )]
    UnknownResource {
        object: ObjectRef,
        resource: String,
        /// The resources file, and the names of its resources.
        source_name: String,
        known: String,
    },
    #[error("cannot fetch {object}")]
    Fetch {
        object: ObjectRef,
        #[source]
        source: S3ReadError,
    },
    #[error("{object} has sha256 {actual} but the message says {expected}")]
    Checksum {
        object: ObjectRef,
        expected: String,
        actual: String,
    },
    #[error("{object} is not a JSON array of {resource}")]
    Parse {
        object: ObjectRef,
        resource: String,
        #[source]
        source: RecordsError,
    },
    #[error("{object} holds {actual} records but the message says {expected}")]
    RecordCount {
        object: ObjectRef,
        expected: u64,
        actual: u64,
    },
    #[error("cannot apply {object}")]
    Store {
        object: ObjectRef,
        #[source]
        source: StoreError,
    },
    /// A task reading or parsing the object panicked or was cancelled.
    #[error("the work on {object} stopped")]
    Crashed {
        object: ObjectRef,
        #[source]
        source: JoinError,
    },
}

/// Why an object could not be read from S3.
#[derive(Debug, thiserror::Error)]
pub enum S3ReadError {
    /// Boxed: the SDK's error is large, and errors travel far.
    #[error("GetObject failed")]
    Get(#[source] Box<SdkError<GetObjectError>>),
    #[error("reading the body failed")]
    Read(#[source] ByteStreamError),
}

impl S3ReadError {
    /// The object or its bucket does not exist: no retry will find it.
    pub fn is_missing(&self) -> bool {
        match self {
            Self::Get(e) => match e.as_ref() {
                SdkError::ServiceError(e) => {
                    e.err().is_no_such_key() || e.err().code() == Some("NoSuchBucket")
                }
                _ => false,
            },
            Self::Read(_) => false,
        }
    }
}

impl ProcessError {
    /// True when trying again cannot help: the object is missing, corrupt
    /// or not what it claims to be, the database refuses its rows, or the
    /// parser panicked on its bytes.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Fetch { source, .. } => source.is_missing(),
            Self::Store { source, .. } => source.is_permanent(),
            Self::Crashed { source, .. } => source.is_panic(),
            Self::UnknownFormat { .. }
            | Self::UnknownResource { .. }
            | Self::Checksum { .. }
            | Self::Parse { .. }
            | Self::RecordCount { .. } => true,
        }
    }

    /// A short name for logs and metrics (`error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownFormat { .. } => "unknown_format",
            Self::UnknownResource { .. } => "unknown_resource",
            Self::Fetch { source, .. } if source.is_missing() => "object_missing",
            Self::Fetch { .. } => "s3_unavailable",
            Self::Checksum { .. } => "checksum_mismatch",
            Self::Parse { .. } => "not_a_json_array",
            Self::RecordCount { .. } => "record_count_mismatch",
            Self::Store { source, .. } if source.is_permanent() => "database_refused",
            Self::Store { .. } => "database_unavailable",
            Self::Crashed { .. } => "crashed",
        }
    }
}
