//! Object stores: the one place that reads `[storage]` options. Every option must be
//! one object_store knows (an unknown key is an error, not silently dropped); Delta
//! tables get the same checked options through delta-rs, and Parquet and CSV sources
//! on S3 read through a store built here from them.

use std::str::FromStr;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::RetryConfig;
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
    #[error("unknown storage option `{key}`; the options are object_store's S3 keys, e.g. aws_region, aws_endpoint, aws_access_key_id, aws_secret_access_key, aws_allow_http, timeout, and the retry keys max_retries, retry_timeout, init_backoff, max_backoff, base")]
    UnknownOption {
        /// The key.
        key: String,
    },
    /// A retry option whose value does not read as its type.
    #[error("storage option `{key}` = `{value}`: expected {expected}")]
    RetryValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What it should be.
        expected: &'static str,
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

/// What a `[storage]` option sets.
#[derive(Debug)]
pub(crate) enum StoreOption {
    /// An object_store S3 option.
    S3(AmazonS3ConfigKey),
    /// The retries of requests that fail with 5xx or time out (object_store's
    /// `RetryConfig`, read by delta-rs from the same keys).
    Retry(RetryKey),
}

/// A key of object_store's retry configuration, as delta-rs names them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RetryKey {
    MaxRetries,
    RetryTimeout,
    InitBackoff,
    MaxBackoff,
    Base,
}

/// What a `[storage]` option sets, or an error for a key object_store does not know.
pub(crate) fn check_option(key: &str) -> Result<StoreOption, StorageError> {
    let key = key.to_ascii_lowercase();
    let retry = match key
        .trim_start_matches("backoff_config.")
        .trim_start_matches("backoff.")
    {
        "max_retries" => Some(RetryKey::MaxRetries),
        "retry_timeout" => Some(RetryKey::RetryTimeout),
        "init_backoff" => Some(RetryKey::InitBackoff),
        "max_backoff" => Some(RetryKey::MaxBackoff),
        "base" => Some(RetryKey::Base),
        _ => None,
    };
    if let Some(r) = retry {
        return Ok(StoreOption::Retry(r));
    }
    AmazonS3ConfigKey::from_str(&key)
        .map(StoreOption::S3)
        .map_err(|_| StorageError::UnknownOption { key })
}

/// Checks a `[storage]` option: a known key, and for a retry key a value of its type.
pub(crate) fn check_value(key: &str, value: &str) -> Result<(), StorageError> {
    if let StoreOption::Retry(k) = check_option(key)? {
        set_retry(&mut RetryConfig::default(), k, key, value)?;
    }
    Ok(())
}

/// Sets `key` = `value` in `config`.
fn set_retry(
    config: &mut RetryConfig,
    key: RetryKey,
    name: &str,
    value: &str,
) -> Result<(), StorageError> {
    let bad = |expected| StorageError::RetryValue {
        key: name.to_string(),
        value: value.to_string(),
        expected,
    };
    let duration =
        || humantime::parse_duration(value).map_err(|_| bad("a duration such as \"30s\""));
    match key {
        RetryKey::MaxRetries => config.max_retries = value.parse().map_err(|_| bad("a number"))?,
        RetryKey::RetryTimeout => config.retry_timeout = duration()?,
        RetryKey::InitBackoff => config.backoff.init_backoff = duration()?,
        RetryKey::MaxBackoff => config.backoff.max_backoff = duration()?,
        RetryKey::Base => config.backoff.base = value.parse().map_err(|_| bad("a number"))?,
    }
    Ok(())
}

/// Registers an S3 object store for `url`'s bucket in `ctx`, built from the (checked,
/// resolved) storage options, falling back to the standard `AWS_*` variables.
pub(crate) fn register_s3(
    ctx: &SessionContext,
    url: &Url,
    storage: &StorageOptions,
) -> Result<(), StorageError> {
    let (base, store) = s3_store(url, storage)?;
    ctx.register_object_store(&base, store);
    Ok(())
}

/// The S3 object store of `url`'s bucket and the bucket's URL (`s3://bucket/`), built
/// from the (checked, resolved) storage options and the standard `AWS_*` variables.
pub(crate) fn s3_store(
    url: &Url,
    storage: &StorageOptions,
) -> Result<(Url, Arc<dyn object_store::ObjectStore>), StorageError> {
    let bucket = url.host_str().unwrap_or_default();
    let base = format!("s3://{bucket}/");
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let mut retry = RetryConfig::default();
    for (key, value) in storage {
        match check_option(key)? {
            StoreOption::S3(k) => builder = builder.with_config(k, value),
            StoreOption::Retry(k) => set_retry(&mut retry, k, key, value)?,
        }
    }
    builder = builder.with_retry(retry);
    let store = builder.build().map_err(|source| StorageError::Build {
        url: base.clone(),
        source,
    })?;
    let base = Url::parse(&base).map_err(|source| StorageError::InvalidUrl {
        location: base.clone(),
        source,
    })?;
    Ok((base, Arc::new(store)))
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
            "max_retries",
            "retry_timeout",
            "backoff_config.init_backoff",
        ] {
            assert!(check_option(key).is_ok(), "{key}");
        }
        let err = check_option("aws_endpont").unwrap_err();
        assert!(err
            .to_string()
            .contains("unknown storage option `aws_endpont`"));
        let mut config = RetryConfig::default();
        set_retry(&mut config, RetryKey::MaxRetries, "max_retries", "3").unwrap();
        set_retry(&mut config, RetryKey::RetryTimeout, "retry_timeout", "2m").unwrap();
        assert_eq!(
            (config.max_retries, config.retry_timeout.as_secs()),
            (3, 120)
        );
        let err = set_retry(&mut config, RetryKey::MaxRetries, "max_retries", "ten").unwrap_err();
        assert!(err.to_string().contains("expected a number"), "{err}");
    }
}
