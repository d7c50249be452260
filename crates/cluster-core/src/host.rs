//! Proof that no other process of a node runs on this host: an exclusive lock file held for the
//! process's lifetime, plus the host's identity (machine-id, boot-id) advertised in the member
//! record.
//!
//! A process restarted on the same host after a crash finds its predecessor's member record
//! still in the store (it expires only after `member_ttl`). With a [`HostLock`] (see
//! `PlatformBuilder::host_lock`) it may take that record over at once when the record was
//! written on this machine and either in an earlier boot, or by the holder of the very lock
//! file it now holds (same device and inode): the kernel released that lock, so the writer is
//! gone. Anything else (another host, another lock file, a record that does not name a host)
//! needs the usual proof: the record is not renewed for `member_ttl`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a member runs, as advertised in its record (optional: absent for platforms built
/// without a [`HostLock`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// `/etc/machine-id` of the host.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id` of the host (changes at every boot).
    pub boot_id: String,
    /// The lock file held by the process, as `device:inode`.
    #[serde(default)]
    pub lock: String,
}

impl HostInfo {
    /// Whether the process that wrote `previous` is certainly gone, judged by this process,
    /// which holds the lock file named in `self`: same machine, and an earlier boot or the
    /// same lock file.
    pub fn proves_gone(&self, previous: &HostInfo) -> bool {
        !self.machine_id.is_empty()
            && previous.machine_id == self.machine_id
            && (previous.boot_id != self.boot_id
                || (!self.lock.is_empty() && previous.lock == self.lock))
    }
}

/// Why a [`HostLock`] could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum HostLockError {
    /// Another live process holds the lock.
    #[error("lock file {} is held by another live process", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
    },
    /// The file could not be opened or locked.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// An exclusive lock (`flock`) on a file, held until dropped, with this host's identity.
#[derive(Debug)]
pub struct HostLock {
    _file: File,
    path: PathBuf,
    info: HostInfo,
}

/// Where the machine-id is read.
const MACHINE_ID: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
/// Where the boot-id is read.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

fn read_id(paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| {
        let id = std::fs::read_to_string(p).ok()?.trim().to_owned();
        (!id.is_empty()).then_some(id)
    })
}

impl HostLock {
    /// Takes the lock on `path` (created if needed, mode 0600; the directory must exist) and
    /// reads the host identity (empty when the host has no machine-id: then the lock still
    /// keeps a second process out, but proves nothing about records). Fails with
    /// [`HostLockError::Held`] while another process holds it.
    pub fn acquire(path: impl AsRef<Path>) -> Result<Self, HostLockError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| HostLockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(HostLockError::Held { path }),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is for people looking at the file; nothing reads it.
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let machine_id = read_id(&MACHINE_ID).unwrap_or_default();
        let boot_id = read_id(&[BOOT_ID]).unwrap_or_default();
        Ok(Self {
            _file: file,
            path,
            info: HostInfo {
                machine_id,
                boot_id,
                lock: format!("{}:{}", meta.dev(), meta.ino()),
            },
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This host's identity and the lock file's, as advertised in the member record.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(machine: &str, boot: &str, lock: &str) -> HostInfo {
        HostInfo {
            machine_id: machine.into(),
            boot_id: boot.into(),
            lock: lock.into(),
        }
    }

    #[test]
    fn proof_needs_the_same_machine_and_an_earlier_boot_or_the_same_lock() {
        let me = info("m1", "b1", "1:2");
        assert!(me.proves_gone(&info("m1", "b1", "1:2")));
        assert!(me.proves_gone(&info("m1", "b0", "9:9")));
        assert!(
            !me.proves_gone(&info("m1", "b1", "1:3")),
            "another lock file"
        );
        assert!(!me.proves_gone(&info("m2", "b0", "1:2")), "another host");
        assert!(!info("", "b1", "").proves_gone(&info("", "b0", "")));
        assert!(!info("m1", "b1", "").proves_gone(&info("m1", "b1", "")));
    }

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("host-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n1.lock");
        let first = HostLock::acquire(&path).unwrap();
        assert!(
            !first.info().machine_id.is_empty(),
            "this host has a machine-id"
        );
        assert!(matches!(
            HostLock::acquire(&path),
            Err(HostLockError::Held { .. })
        ));
        let lock = first.info().lock.clone();
        drop(first);
        let again = HostLock::acquire(&path).unwrap();
        assert_eq!(again.info().lock, lock, "same file, same device:inode");
        assert!(again.info().proves_gone(&again.info().clone()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
