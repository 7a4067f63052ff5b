//! A read-only view of a spool that a broker left behind, for `vestnik webhooks dead-letters`:
//! listing dead letters must never create a spool, change one, or race a running broker.
//!
//! redb 2 has no read-only mode (opening writes a recovery flag to the file's header, and may
//! repair it), so the view opens the file read-only under a shared lock and gives redb a storage
//! backend that keeps every write in memory. The file on disk is never written; a running broker
//! (which holds the file's exclusive lock) makes the view fail instead of reading a file that is
//! changing under it. This module must never open the spool for writing.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use parking_lot::Mutex;
use redb::{Database, StorageBackend};

use crate::error::Error;
use crate::spool::{self, DeadLetter};

/// Bytes per page of the in-memory overlay: the smallest page redb uses.
const OVERLAY_PAGE: u64 = 4096;

/// A spool opened for reading only.
#[derive(Debug)]
pub struct SpoolView {
    /// A redb database over [`ReadOnlyBackend`]; whatever redb writes while opening stays in
    /// memory.
    db: Database,
}

impl SpoolView {
    /// Opens the spool in `data_dir` without writing to it: fails when the directory or the spool
    /// is missing, or when a running broker holds it.
    ///
    /// Read-only here means the file's bytes: redb still writes its recovery flag on open, into the
    /// in-memory overlay of `ReadOnlyBackend`, which is dropped with the view.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        let path = spool::existing_file(data_dir)?;
        let file = File::open(&path).map_err(|e| Error::from(redb::DatabaseError::from(e)))?;
        lock_shared(&file, data_dir)?;
        let backend = ReadOnlyBackend {
            len: Mutex::new(file.metadata().map_err(redb::StorageError::from)?.len()),
            file: Mutex::new(file),
            overlay: Mutex::new(HashMap::new()),
        };
        let db = Database::builder().create_with_backend(backend)?;
        Ok(Self { db })
    }

    /// The dead letters of one app, oldest first.
    pub fn dead_letters(&self, app_id: &str) -> Result<Vec<DeadLetter>, Error> {
        spool::dead_letters(&self.db.begin_read()?, app_id)
    }

    /// Every app id with a pending batch or a dead letter.
    pub fn app_ids(&self) -> Result<BTreeSet<String>, Error> {
        spool::app_ids(&self.db.begin_read()?)
    }
}

/// A shared lock, so that no broker starts on the spool while it is read, and a running one (with
/// its exclusive lock) is reported instead of read. The lock goes with the file handle.
#[cfg(unix)]
fn lock_shared(file: &File, data_dir: &Path) -> Result<(), Error> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::InUse {
            path: data_dir.to_owned(),
        }),
        Err(e) => Err(redb::StorageError::from(std::io::Error::from(e)).into()),
    }
}

/// Without `flock`, the view relies on the broker being stopped, as the CLI's help says.
#[cfg(not(unix))]
fn lock_shared(_file: &File, _data_dir: &Path) -> Result<(), Error> {
    Ok(())
}

/// A redb backend over a file opened read-only: reads come from the file, writes go to an
/// in-memory overlay of whole pages, which later reads see.
#[derive(Debug)]
struct ReadOnlyBackend {
    /// The spool file, opened read-only and holding the shared lock for the view's life.
    file: Mutex<File>,
    /// The length redb believes the storage has (it may grow it in memory).
    len: Mutex<u64>,
    /// Pages redb wrote, by page index; they shadow the file's pages and are dropped with the view.
    overlay: Mutex<HashMap<u64, Vec<u8>>>,
}

impl ReadOnlyBackend {
    /// Page `index` as it is now: from the overlay, else from the file (zeros past its end).
    fn page(&self, index: u64) -> std::io::Result<Vec<u8>> {
        if let Some(page) = self.overlay.lock().get(&index) {
            return Ok(page.clone());
        }
        let mut page = vec![0; OVERLAY_PAGE as usize];
        let mut file = self.file.lock();
        let on_disk = file.metadata()?.len();
        let start = index * OVERLAY_PAGE;
        if start < on_disk {
            let n = (on_disk - start).min(OVERLAY_PAGE) as usize;
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut page[..n])?;
        }
        Ok(page)
    }
}

impl StorageBackend for ReadOnlyBackend {
    /// The length redb set last, which may differ from the file's after an in-memory `set_len`.
    fn len(&self) -> std::io::Result<u64> {
        Ok(*self.len.lock())
    }

    /// Reads across page boundaries, each page from the overlay if redb wrote it, else from the
    /// file.
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let end = offset + len as u64;
        let mut at = offset;
        while at < end {
            let index = at / OVERLAY_PAGE;
            let within = (at % OVERLAY_PAGE) as usize;
            let take = ((OVERLAY_PAGE - at % OVERLAY_PAGE).min(end - at)) as usize;
            out.extend_from_slice(&self.page(index)?[within..within + take]);
            at += take as u64;
        }
        Ok(out)
    }

    /// Only the believed length changes; the file is never truncated or extended.
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        *self.len.lock() = len;
        Ok(())
    }

    /// Nothing to make durable: no write ever reaches the disk.
    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        Ok(())
    }

    /// Read-modify-write of whole pages into the overlay, so a later read of a partly written page
    /// sees both the file's bytes and redb's.
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = at / OVERLAY_PAGE;
            let within = (at % OVERLAY_PAGE) as usize;
            let take = rest.len().min(OVERLAY_PAGE as usize - within);
            let mut page = self.page(index)?;
            page[within..within + take].copy_from_slice(&rest[..take]);
            self.overlay.lock().insert(index, page);
            at += take as u64;
            rest = &rest[take..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Spool;

    fn digest(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// The CLI on a mistyped `--data-dir` must say so, and must not leave an empty dir or spool
    /// behind that a later broker start would then use.
    #[test]
    fn a_missing_dir_or_spool_is_an_error_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        assert!(matches!(
            SpoolView::open(&missing),
            Err(Error::NoDataDir { .. })
        ));
        assert!(!missing.exists());
        assert!(matches!(
            SpoolView::open(dir.path()),
            Err(Error::NoSpool { .. })
        ));
        assert!(!dir.path().join(spool::SPOOL_FILE).exists());
        assert!(matches!(
            Spool::open_existing(&missing),
            Err(Error::NoDataDir { .. })
        ));
        assert!(!missing.exists());
    }

    /// The file's bytes are compared before and after: redb's recovery-flag write must land in the
    /// overlay, never on disk, and a spool a live broker holds is refused rather than read
    /// mid-change.
    #[test]
    fn reads_without_writing_and_refuses_a_spool_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(spool::SPOOL_FILE);
        {
            let spool = Spool::open(dir.path()).unwrap();
            let batch = crate::spool::StoredBatch {
                app_id: "app-1".into(),
                url: "http://a/".into(),
                headers: Default::default(),
                created_ms: 1,
                events: vec![crate::spool::StoredEvent {
                    id: "ev-1".into(),
                    json: r#"{"name":"cache_miss","channel":"c","id":"ev-1"}"#.into(),
                }],
            };
            let keys = spool.insert(&[batch]).unwrap();
            assert_eq!(spool.bury(keys[0], 4, "HTTP 500", 99).unwrap(), 1);
            // A running broker holds the spool: the view says so.
            assert!(matches!(
                SpoolView::open(dir.path()),
                Err(Error::InUse { .. })
            ));
        }
        let before = digest(&file);
        let view = SpoolView::open(dir.path()).unwrap();
        let letters = view.dead_letters("app-1").unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].id, "ev-1");
        assert!(view.dead_letters("app-2").unwrap().is_empty());
        assert_eq!(
            view.app_ids().unwrap().into_iter().collect::<Vec<_>>(),
            ["app-1"]
        );
        drop(view);
        assert!(digest(&file) == before, "the view wrote to the spool");
    }
}
