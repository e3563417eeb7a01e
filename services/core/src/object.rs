//! The address of one object in S3.

use std::fmt;

/// A bucket and key, displayed as `s3://bucket/key` so that every log line
/// and error about an object names it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_s3_uri() {
        let object = ObjectRef::new("raw", "posts/2026/11/26/x.json");
        assert_eq!(object.to_string(), "s3://raw/posts/2026/11/26/x.json");
    }
}
