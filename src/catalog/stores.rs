//! Object stores: the one place that reads `[storage]` options. Every option must be
//! one object_store knows (an unknown key is an error, not silently dropped); Delta
//! tables get the same checked options through delta-rs, and Parquet and CSV sources
//! on S3 read through a store built here from them.

use std::str::FromStr;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use url::Url;

use crate::delta::StorageOptions;

/// A location or storage option that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The location looks like a URL but does not parse as one.
    #[error("`{location}` is not a valid URL")]
    InvalidUrl {
        /// The location as written.
        location: String,
        /// The URL parser's error.
        #[source]
        source: url::ParseError,
    },
    /// A local location that does not make an absolute path.
    #[error("`{}` is not an absolute path", path.display())]
    NotAbsolute {
        /// The path.
        path: std::path::PathBuf,
    },
    /// A `[storage]` key object_store does not know.
    #[error("unknown storage option `{key}`; the options are object_store's S3 keys, e.g. aws_region, aws_endpoint, aws_access_key_id, aws_secret_access_key, aws_allow_http, timeout")]
    UnknownOption {
        /// The key.
        key: String,
    },
    /// object_store refused the options (e.g. a value of the wrong form).
    #[error("cannot make the object store for {url}")]
    Build {
        /// The bucket URL.
        url: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
}

/// The object_store key of a `[storage]` option, or an error for an unknown one.
pub(crate) fn check_option(key: &str) -> Result<AmazonS3ConfigKey, StorageError> {
    AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()).map_err(|_| {
        StorageError::UnknownOption {
            key: key.to_string(),
        }
    })
}

/// Registers an S3 object store for `url`'s bucket in `ctx`, built from the (checked,
/// resolved) storage options, falling back to the standard `AWS_*` variables.
pub(crate) fn register_s3(
    ctx: &SessionContext,
    url: &Url,
    storage: &StorageOptions,
) -> Result<(), StorageError> {
    let bucket = url.host_str().unwrap_or_default();
    let base = format!("s3://{bucket}/");
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in storage {
        builder = builder.with_config(check_option(key)?, value);
    }
    let store = builder.build().map_err(|source| StorageError::Build {
        url: base.clone(),
        source,
    })?;
    let base = Url::parse(&base).map_err(|source| StorageError::InvalidUrl {
        location: base.clone(),
        source,
    })?;
    ctx.register_object_store(&base, Arc::new(store));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_options_are_object_store_keys() {
        for key in [
            "aws_region",
            "aws_endpoint",
            "aws_access_key_id",
            "aws_allow_http",
            "AWS_REGION",
            "timeout",
        ] {
            assert!(check_option(key).is_ok(), "{key}");
        }
        let err = check_option("aws_endpont").unwrap_err();
        assert!(err
            .to_string()
            .contains("unknown storage option `aws_endpont`"));
    }
}
