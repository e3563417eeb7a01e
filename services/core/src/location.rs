//! Where a file a service reads at start sits: the resources file
//! (`RESOURCES_FILE`) and the user's migrations (`MIGRATIONS_DIR`).
//!
//! On this machine (baked into an image, mounted by compose), or in S3 as
//! `s3://bucket/key` (a file) or `s3://bucket/prefix/` (a directory): the
//! ECS stack keeps them in its bucket (`ecs/deploy.sh --resources FILE
//! --migrations DIR`), so that changing a resource is an upload and a new
//! task definition, with no image to build. A file in S3 is read whole at
//! start; a directory is copied into a temporary one, which diesel then
//! reads as it reads any other.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::aws::{AwsClients, CheckError};
use crate::object::ObjectRef;
use crate::settings::{AwsSettings, SettingError};
use crate::startup::WaitError;

/// A file or directory named by a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    /// A key, or for a directory the prefix its files' keys start with.
    S3(ObjectRef),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "{}", path.display()),
            Self::S3(object) => write!(f, "{object}"),
        }
    }
}

/// `s3://bucket/key` or a path; the clap parser of both settings.
pub fn parse_location(value: &str) -> Result<Location, String> {
    let Some(rest) = value.strip_prefix("s3://") else {
        return Ok(Location::Path(PathBuf::from(value)));
    };
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok(Location::S3(ObjectRef::new(bucket, key)))
        }
        _ => Err("an S3 location is s3://BUCKET/KEY, with both".into()),
    }
}

/// What went wrong reading a file from S3.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Unreachable(#[from] WaitError<CheckError>),
    #[error("cannot read {object}: {reason}")]
    Read { object: ObjectRef, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{prefix} holds {key}, which names no file under it")]
    OutsidePrefix { prefix: ObjectRef, key: String },
}

/// The text of the object, waiting up to `wait` for an S3 endpoint that
/// does not answer yet.
pub async fn read_text(
    aws: &AwsClients,
    object: &ObjectRef,
    wait: Duration,
) -> Result<String, LocationError> {
    let got = crate::aws::check_object(aws, object, wait).await?;
    let read = |reason: String| LocationError::Read {
        object: object.clone(),
        reason,
    };
    let bytes = got
        .body
        .collect()
        .await
        .map_err(|e| read(e.to_string()))?
        .into_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|e| read(format!("not UTF-8 text ({e})")))
}

/// A directory on this machine: the one named, or a copy of an S3 prefix
/// that is removed when this is dropped. Displayed as the setting named it.
#[derive(Debug)]
pub struct LocalDir {
    location: Location,
    path: PathBuf,
    _copy: Option<tempfile::TempDir>,
}

impl LocalDir {
    /// A directory of this machine's, as it is.
    pub fn named(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            location: Location::Path(path.clone()),
            path,
            _copy: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for LocalDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.location.fmt(f)
    }
}

/// The directory at `location` on this machine: the path itself, or every
/// object under the S3 prefix copied to a temporary directory, at its key
/// less the prefix. Waits up to `wait` for S3 to answer.
pub async fn local_dir(
    location: &Location,
    aws: &AwsSettings,
    wait: Duration,
) -> Result<LocalDir, LocationError> {
    let prefix = match location {
        Location::Path(path) => return Ok(LocalDir::named(path)),
        Location::S3(prefix) => prefix,
    };
    let aws = &AwsClients::new(aws).await?;
    // `s3://b/migrations` and `s3://b/migrations/` name the same directory,
    // and not `migrations-old/`.
    let prefix = ObjectRef::new(
        &prefix.bucket,
        format!("{}/", prefix.key.trim_end_matches('/')),
    );
    let dir = tempfile::Builder::new()
        .prefix("pipeline-")
        .tempdir()
        .map_err(|source| LocationError::Write {
            path: std::env::temp_dir(),
            source,
        })?;
    let keys = crate::aws::list_keys(aws, &prefix, wait).await?;
    for key in keys {
        let relative = &key[prefix.key.len()..];
        // A console's "folder" is an empty object named with a slash.
        if relative.is_empty() || relative.ends_with('/') {
            continue;
        }
        // Only plain names below the prefix: never `..` out of the copy.
        if !Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(LocationError::OutsidePrefix { prefix, key });
        }
        let object = ObjectRef::new(&prefix.bucket, &key);
        let text = read_text(aws, &object, wait).await?;
        let path = dir.path().join(relative);
        let write = |source| LocationError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, text).map_err(write)?;
    }
    Ok(LocalDir {
        location: location.clone(),
        path: dir.path().to_owned(),
        _copy: Some(dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_key_and_anything_else_is_a_path() {
        assert_eq!(
            parse_location("s3://stack-raw/config/resources/ab12.toml"),
            Ok(Location::S3(ObjectRef::new(
                "stack-raw",
                "config/resources/ab12.toml"
            )))
        );
        assert_eq!(
            parse_location("/etc/pipeline/resources.toml"),
            Ok(Location::Path("/etc/pipeline/resources.toml".into()))
        );
        for half in ["s3://bucket", "s3://bucket/", "s3:///key"] {
            assert!(parse_location(half).is_err(), "{half}");
        }
    }
}
