//! Which gateway processes are alive. Each process sharing a data directory (one per stdio
//! client, the HTTP server, the CLI's `call`) holds an exclusive lock on its own file under
//! `owners/` for as long as it lives; the kernel drops the lock when the process dies, however
//! it dies. A keyed run left "running" by a process whose lock can be taken was interrupted.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{FlockOperation, flock};

/// This process's lease on its owner id.
pub struct Lease {
    id: String,
    dir: Option<PathBuf>,
    _file: Option<File>,
}

fn path(dir: &Path, id: &str) -> Option<PathBuf> {
    let plain = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plain.then(|| dir.join("owners").join(format!("{id}.lock")))
}

impl Lease {
    /// Takes a new owner id under `data_dir`.
    pub fn take(data_dir: &Path) -> Result<Self> {
        let id = format!("gw_{}", crate::time::random_hex(8)?);
        let dir = data_dir.join("owners");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file_path = dir.join(format!("{id}.lock"));
        let file = File::create(&file_path)
            .with_context(|| format!("creating {}", file_path.display()))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("locking {}", file_path.display()))?;
        Ok(Self {
            id,
            dir: Some(data_dir.to_path_buf()),
            _file: Some(file),
        })
    }

    /// A lease for a store no other process can see (tests, in-memory stores).
    pub fn private() -> Result<Self> {
        Ok(Self {
            id: format!("gw_{}", crate::time::random_hex(8)?),
            dir: None,
            _file: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the process holding `owner` is still alive. Unknown ids count as dead; the
    /// lock file of a dead owner is removed.
    pub fn alive(&self, owner: &str) -> bool {
        if owner == self.id {
            return true;
        }
        let Some(file_path) = self.dir.as_deref().and_then(|d| path(d, owner)) else {
            return false;
        };
        let file = match File::open(&file_path) {
            Ok(file) => file,
            // No lock file: that process ended (and removed it) or never existed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            // Cannot tell (out of descriptors, permissions): assume alive, never take over.
            Err(_) => return true,
        };
        match flock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = std::fs::remove_file(&file_path);
                false
            }
            Err(_) => true,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(file_path) = self.dir.as_deref().and_then(|d| path(d, &self.id)) {
            let _ = std::fs::remove_file(file_path);
        }
    }
}
