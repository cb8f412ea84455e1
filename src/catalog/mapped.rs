//! Local files read through memory maps: the object store a session reads `file://`
//! tables with.
//!
//! object_store's `LocalFileSystem` answers a range request by zero-filling a new
//! buffer and `pread`ing the file into it: for a scan of 10 M rows × 9 columns that is
//! the kernel's copy out of the page cache, the zeroing, and the faults that give the
//! buffer its fresh pages — a fifth of the CPU time of reading and rewriting the table.
//! A large range here is instead a read-only map of the file's pages, populated at
//! once (one call instead of a fault per page) and unmapped when the decoder drops the
//! last slice of it: the bytes are the page cache's own. Small ranges (footers,
//! narrow column chunks) and everything else — listing, writing, deleting — go to
//! `LocalFileSystem`.
//!
//! A mapped file that another process truncates while a range of it is being read
//! would fault (SIGBUS) rather than error. quern never rewrites a file in place: Delta
//! and Parquet outputs are new files, replaced by rename or by a commit.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// Ranges at least this long are mapped; shorter ones are read (a map costs two
/// system calls and a TLB flush when it goes).
const MAP_AT_LEAST: u64 = 256 * 1024;

/// The `file://` store: `LocalFileSystem`, with large ranges memory-mapped.
pub(crate) fn local_files() -> Arc<dyn ObjectStore> {
    Arc::new(MappedFiles {
        local: Arc::new(LocalFileSystem::new()),
    })
}

#[derive(Debug)]
struct MappedFiles {
    local: Arc<LocalFileSystem>,
}

impl fmt::Display for MappedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MappedFiles({})", self.local)
    }
}

impl MappedFiles {
    /// `ranges` of the file at `location`, each mapped or read, in one blocking task,
    /// and the file's metadata. With `clamp`, a range past the end is cut at the end
    /// (as `LocalFileSystem::get_opts` does); without, it is an error (as its
    /// `get_ranges`).
    async fn read(
        &self,
        location: &Path,
        ranges: Vec<Range<u64>>,
        clamp: bool,
    ) -> Result<(Vec<Bytes>, std::fs::Metadata)> {
        let path = self.local.path_to_filesystem(location)?;
        let location = location.clone();
        let read = move || {
            let file = File::open(&path).map_err(|e| error(&location, e))?;
            let metadata = file.metadata().map_err(|e| error(&location, e))?;
            let size = metadata.len();
            let bytes = ranges
                .into_iter()
                .map(|r| match clamp && r.start < size {
                    true => r.start..r.end.min(size),
                    false => r,
                })
                .map(|range| range_of(&file, size, range, &location))
                .collect::<Result<Vec<_>>>()?;
            Ok((bytes, metadata))
        };
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "MappedFiles",
                source: Box::new(e),
            })?
    }
}

/// `range` of `file` (`size` bytes long): its mapped pages, or for a short range a copy.
fn range_of(file: &File, size: u64, range: Range<u64>, location: &Path) -> Result<Bytes> {
    if range.start > range.end || range.end > size {
        let message = format!("range {range:?} is outside the file's {size} bytes");
        return Err(error(location, std::io::Error::other(message)));
    }
    let len = (range.end - range.start) as usize;
    if (len as u64) < MAP_AT_LEAST {
        let mut buf = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, range.start)
            .map_err(|e| error(location, e))?;
        return Ok(Bytes::from(buf));
    }
    // SAFETY: the map is read-only and private to this process, and files under a
    // table are never rewritten in place (see the module docs).
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(range.start)
            .len(len)
            .populate()
            .map(file)
    }
    .map_err(|e| error(location, e))?;
    Ok(Bytes::from_owner(map))
}

fn error(location: &Path, e: std::io::Error) -> object_store::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(e),
        },
        _ => object_store::Error::Generic {
            store: "MappedFiles",
            source: format!("{location}: {e}").into(),
        },
    }
}

#[async_trait]
impl ObjectStore for MappedFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.local.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.local.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        // A plain bounded range; conditional and open-ended requests go to
        // LocalFileSystem, which checks them against the file's metadata.
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        let range = match &options.range {
            Some(GetRange::Bounded(r))
                if plain && r.end.saturating_sub(r.start) >= MAP_AT_LEAST =>
            {
                r.clone()
            }
            _ => return self.local.get_opts(location, options).await,
        };
        let (mut bytes, metadata) = self.read(location, vec![range.clone()], true).await?;
        let bytes = bytes.pop().unwrap_or_default();
        let range = range.start..range.start + bytes.len() as u64;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: metadata.modified().map(Into::into).unwrap_or_default(),
            size: metadata.len(),
            e_tag: None,
            version: None,
        };
        let payload = futures::stream::once(async move { Ok(bytes) }).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        Ok(self.read(location, ranges.to_vec(), false).await?.0)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.local.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.local.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.local.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.local.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.local.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.local.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    /// A file of `len` bytes whose byte i is i mod 251, in a fresh folder.
    fn file(len: usize) -> (tempfile::TempDir, Path) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        (dir, Path::from_absolute_path(&path).unwrap())
    }

    fn expected(range: Range<u64>) -> Vec<u8> {
        range.map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn mapped_and_read_ranges_hold_the_files_bytes() {
        let len = 3 * MAP_AT_LEAST as usize + 17;
        let (_dir, location) = file(len);
        let store = local_files();
        // Mapped (long, at unaligned offsets and up to the end) and read (short) ones.
        let ranges = [
            0..MAP_AT_LEAST,
            4097..4097 + 2 * MAP_AT_LEAST,
            10..20,
            (len as u64 - MAP_AT_LEAST - 5)..len as u64,
            7..7,
        ];
        let got = store.get_ranges(&location, &ranges).await.unwrap();
        for (bytes, range) in got.iter().zip(&ranges) {
            assert_eq!(
                bytes.as_ref(),
                expected(range.clone()).as_slice(),
                "{range:?}"
            );
        }
        let one = 1000..1000 + MAP_AT_LEAST + 1;
        let bytes = store.get_range(&location, one.clone()).await.unwrap();
        assert_eq!(bytes.as_ref(), expected(one).as_slice());
        // A slice outlives the store and the other slices of its map.
        let kept = got[1].slice(10..20);
        drop(got);
        drop(store);
        assert_eq!(kept.as_ref(), expected(4107..4117).as_slice());
    }

    #[tokio::test]
    async fn whole_files_listing_and_writing_go_to_the_local_store() {
        let (dir, location) = file(1000);
        let store = local_files();
        let all = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(all.as_ref(), expected(0..1000).as_slice());
        assert_eq!(store.head(&location).await.unwrap().size, 1000);
        let other = Path::from_absolute_path(dir.path().join("other.bin")).unwrap();
        store
            .put(&other, PutPayload::from_static(b"abc"))
            .await
            .unwrap();
        let listed: Vec<_> = store
            .list(Some(&Path::from_absolute_path(dir.path()).unwrap()))
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(listed.len(), 2);
    }

    #[tokio::test]
    async fn a_range_past_the_end_or_a_missing_file_is_an_error() {
        let len = 2 * MAP_AT_LEAST;
        let (dir, location) = file(len as usize);
        let store = local_files();
        // As LocalFileSystem: one range is cut at the end, past it is an error, and
        // among several ranges one past the end is an error.
        let tail = store
            .get_range(&location, MAP_AT_LEAST..len + 9)
            .await
            .unwrap();
        assert_eq!(tail.as_ref(), expected(MAP_AT_LEAST..len).as_slice());
        let err = store
            .get_range(&location, len + 1..len + MAP_AT_LEAST + 1)
            .await;
        assert!(err.is_err());
        // A range that ends before it starts is an error, not an overflow.
        assert!(store.get_range(&location, len..0).await.is_err());
        let err = store
            .get_ranges(&location, &[0..len + 1, 0..1])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("outside the file"), "{err}");
        let missing = Path::from_absolute_path(dir.path().join("missing.bin")).unwrap();
        let err = store
            .get_ranges(&missing, &[0..len, 0..1])
            .await
            .unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    }
}
