//! The guarded `wasi:filesystem/types` (and `preopens`): hidden paths and openable file types,
//! enforced where the guest's filesystem calls reach the host.
//!
//! **Design.** wasmtime-wasi's own implementation (`WasiFilesystemCtxView`) does the work; this
//! layer wraps it ([`GuardView`]) and is linked over it (`Linker::allow_shadowing`) for exactly
//! these two interfaces. Every path-based call is *resolved, not string-matched*:
//!
//! 1. the guest path is split lexically into a parent part and a final name;
//! 2. a non-empty parent part is opened as a directory beneath the guest's descriptor
//!    (`openat2` + `RESOLVE_BENEATH`, like cap-std: never above it), and its real host path is
//!    read from `/proc/self/fd/N` — so `./`, `//`, `a/../`, and symlinks in any intermediate
//!    component are all whatever the kernel says they are;
//! 3. parent and parent/name are checked against the hidden real paths (a hidden path covers
//!    everything below it); a hit is `no-entry`, exactly what an absent path gives;
//! 4. when the call follows a final symlink, the link is read and its target resolved the same
//!    way, relative to the link's directory (at most 16 links, then `loop`);
//! 5. the inner call runs on *(that parent directory, that final name)* without following, so
//!    what was checked is what is used: a symlink swapped in afterwards fails (`O_NOFOLLOW`),
//!    and the parent is an open descriptor, not a path that can change.
//!
//! Real paths of directory descriptors are kept per store (rep → path, from the preopens and
//! from every directory opened; removed on drop); the hidden set is anchored on the preopened
//! descriptors themselves when the guest asks for them. Hidden paths apply to every descriptor
//! of the call, so two grants that overlap cannot be used to go around one's `hide`. Renaming
//! from or to, or creating a symlink at, a strict ancestor of a hidden path (`config` for
//! `config/private`) is `access`: it would move the hidden path or plant one. Listings leave
//! hidden names out (a per-stream list of names to skip). Fail closed: without `/proc` the
//! guest gets `access` for every guarded lookup, and its preopens trap.
//!
//! **Only regular files and directories are opened** (issue 14, B3): `open-at` stats the final
//! target (`statat` without following, after symlink resolution) and refuses a FIFO, socket or
//! device with `access` before the inner open, which would block a host thread past the call's
//! deadline on a FIFO. This check runs for every grant; with no `hide` entries the rest is a
//! single branch.
//!
//! **Residual risks.** (a) Between the `statat` and the inner open, a *host* process (or a
//! concurrent call on the same rw directory that renames a FIFO the host created) can swap the
//! file for a FIFO; the open then blocks on a host thread. (b) A pre-existing hard link
//! elsewhere in the grant to a hidden file, or a bind mount of a hidden directory, is a
//! different path and is not hidden (paths are hidden, not inodes); so is a differently-cased
//! spelling in a case-insensitive (casefold) directory. A `hide` entry that is a symlink hides
//! the link and its target inside the grant. (c) A host process
//! renaming directories under the grant during a call can make a cached real path stale.
//! (d) `openat2` is required (Linux ≥ 5.6); where it is missing, nested paths fail.

mod descriptor;
mod resolve;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::FileType;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDirectoryEntryStream};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{FsError, FsResult, ReaddirIterator};

use crate::grants::{FsGrant, normalize_hide};
use resolve::Hidden;

use super::state::StoreState;

/// What one store's filesystem guard knows.
#[derive(Default)]
pub struct FsGuard {
    /// `hide` entries (normalised) per grant, by guest path.
    hide: Vec<(String, Vec<String>)>,
    /// Some grant hides something: check every lookup. Otherwise only `open-at`'s type check.
    active: bool,
    /// Real host paths hidden, anchored on the preopened descriptors.
    hidden: Hidden,
    /// Real host path of each directory descriptor, by resource rep.
    dirs: HashMap<u32, PathBuf>,
    /// Names each directory stream leaves out, by resource rep.
    streams: HashMap<u32, Vec<String>>,
    /// As configured on the WASI context (for the temporary parent descriptors).
    allow_blocking: bool,
}

impl FsGuard {
    /// The guard for a call with these fs grants; a bad `hide` entry is an error.
    pub fn new(grants: &[FsGrant], allow_blocking: bool) -> Result<Self, String> {
        let mut hide = Vec::new();
        for grant in grants {
            let entries = grant
                .hide
                .iter()
                .map(|entry| normalize_hide(entry))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("fs grant `{}`: {e}", grant.guest))?;
            if !entries.is_empty() {
                hide.push((grant.guest.clone(), entries));
            }
        }
        Ok(Self {
            active: !hide.is_empty(),
            hide,
            allow_blocking,
            ..Self::default()
        })
    }
}

/// Links the guarded `wasi:filesystem/types` and `wasi:filesystem/preopens` over the ones
/// wasmtime-wasi linked.
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = preopens::add_to_linker::<StoreState, Guarded>(linker, view)
        .and_then(|()| types::add_to_linker::<StoreState, Guarded>(linker, view));
    linker.allow_shadowing(false);
    linked
}

fn view(state: &mut StoreState) -> GuardView<'_> {
    GuardView {
        inner: WasiFilesystemCtxView {
            ctx: state.wasi.filesystem(),
            table: &mut state.table,
        },
        guard: &mut state.fsguard,
    }
}

/// The `HasData` of the guarded interfaces.
pub struct Guarded;

impl HasData for Guarded {
    type Data<'a> = GuardView<'a>;
}

/// wasmtime-wasi's filesystem view plus the guard.
pub struct GuardView<'a> {
    inner: WasiFilesystemCtxView<'a>,
    guard: &'a mut FsGuard,
}

/// The result of a guarded lookup, ready for the inner call: a descriptor (`at`: the guest's,
/// or `temp`, the opened parent, deleted by [`GuardView::release`]) and a name in it.
struct Found {
    temp: Option<Resource<Descriptor>>,
    at: u32,
    name: String,
    real: Option<PathBuf>,
    kind: Option<FileType>,
    dir_required: bool,
}

impl Found {
    fn at(&self) -> Resource<Descriptor> {
        Resource::new_borrow(self.at)
    }
}

fn follows(flags: types::PathFlags) -> bool {
    flags.contains(types::PathFlags::SYMLINK_FOLLOW)
}

/// No flags: the final name is already resolved, and must not be followed again.
fn nofollow() -> types::PathFlags {
    types::PathFlags::empty()
}

impl GuardView<'_> {
    /// The real path of directory descriptor `rep` (cached, or from `/proc`).
    fn real_of(&self, rep: u32, dir: &Dir) -> Result<PathBuf, ErrorCode> {
        match self.guard.dirs.get(&rep) {
            Some(path) => Ok(path.clone()),
            None => resolve::real_path(dir.dir.as_fd()),
        }
    }

    /// Resolves `path` relative to `fd` (see the module documentation); with `check`, against
    /// the hidden paths.
    fn find(
        &mut self,
        fd: &Resource<Descriptor>,
        path: &str,
        follow: bool,
        check: bool,
    ) -> FsResult<Found> {
        let Descriptor::Dir(dir) = self.inner.table.get(fd)? else {
            return Err(ErrorCode::NotDirectory.into());
        };
        let (perms, open_mode, handle) = (dir.perms, dir.open_mode, Arc::clone(&dir.dir));
        let base_real = if check {
            Some(self.real_of(fd.rep(), dir)?)
        } else {
            None
        };
        let located = resolve::locate(
            handle.as_fd(),
            base_real.as_deref(),
            &self.guard.hidden,
            path,
            follow,
        )?;
        let temp = match located.parent {
            None => None,
            Some(parent) => Some(self.inner.table.push(Descriptor::Dir(Dir::new(
                std::fs::File::from(parent),
                perms,
                open_mode,
                self.guard.allow_blocking,
            )))?),
        };
        Ok(Found {
            at: temp.as_ref().map_or(fd.rep(), |t| t.rep()),
            temp,
            name: located.name,
            real: located.real,
            kind: located.kind,
            dir_required: located.dir_required,
        })
    }

    /// Deletes a lookup's temporary parent descriptor.
    fn release(&mut self, found: Found) -> FsResult<()> {
        if let Some(temp) = found.temp {
            self.inner.table.delete(temp)?;
        }
        Ok(())
    }

    /// Refuses with `access` if `found` is a strict ancestor of a hidden path.
    fn refuse_guard(&self, found: &Found) -> FsResult<()> {
        match &found.real {
            Some(real) if self.guard.hidden.guards(real) => Err(ErrorCode::Access.into()),
            _ => Ok(()),
        }
    }
}

impl types::Host for GuardView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl preopens::Host for GuardView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let preopens = preopens::Host::get_directories(&mut self.inner)?;
        if !self.guard.active {
            return Ok(preopens);
        }
        for (fd, guest) in &preopens {
            let Descriptor::Dir(dir) = self.inner.table.get(fd)? else {
                continue;
            };
            let real = resolve::real_path(dir.dir.as_fd()).map_err(|_| {
                wasmtime::Error::msg(
                    "cannot learn the real path of a granted directory (/proc/self/fd); \
                     refusing to run with hidden paths unchecked",
                )
            })?;
            for (_, entries) in self.guard.hide.iter().filter(|(g, _)| g == guest) {
                for entry in entries {
                    let paths = resolve::anchor(dir.dir.as_fd(), &real, entry).map_err(|e| {
                        wasmtime::Error::msg(format!(
                            "cannot resolve a hidden path of a granted directory ({e:?}); \
                             refusing to run with hidden paths unchecked"
                        ))
                    })?;
                    for path in paths {
                        self.guard.hidden.add(path);
                    }
                }
            }
            self.guard.dirs.insert(fd.rep(), real);
        }
        Ok(preopens)
    }
}

impl HostDirectoryEntryStream for GuardView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<ReaddirIterator>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        let rep = stream.rep();
        loop {
            let entry = HostDirectoryEntryStream::read_directory_entry(
                &mut self.inner,
                Resource::new_borrow(rep),
            )
            .await?;
            let skipped = match (&entry, self.guard.streams.get(&rep)) {
                (Some(entry), Some(skip)) => skip.contains(&entry.name),
                _ => false,
            };
            if !skipped {
                return Ok(entry);
            }
        }
    }

    fn drop(&mut self, stream: Resource<ReaddirIterator>) -> wasmtime::Result<()> {
        self.guard.streams.remove(&stream.rep());
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
