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

mod resolve;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::FileType;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult, ReaddirIterator};

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

/// Runs one inner call on a guarded lookup: `$call` gets the descriptor and the name.
macro_rules! guarded {
    ($self:ident, $fd:expr, $path:expr, $follow:expr, |$at:ident, $name:ident| $call:expr) => {{
        if !$self.guard.active {
            let ($at, $name) = ($fd, $path);
            return $call.await;
        }
        let found = $self.find(&$fd, &$path, $follow, true)?;
        let ($at, $name) = (found.at(), found.name.clone());
        let result = $call.await;
        $self.release(found)?;
        result
    }};
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
                    for path in resolve::anchor(dir.dir.as_fd(), &real, entry) {
                        self.guard.hidden.add(path);
                    }
                }
            }
            self.guard.dirs.insert(fd.rep(), real);
        }
        Ok(preopens)
    }
}

impl HostDescriptor for GuardView<'_> {
    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let active = self.guard.active;
        let mut found = self.find(&fd, &path, follows(path_flags), active)?;
        // A symlink here was not to be followed: the inner open refuses it (`loop`).
        let openable = |k| {
            matches!(
                k,
                FileType::RegularFile | FileType::Directory | FileType::Symlink
            )
        };
        if found.kind.is_some_and(|k| !openable(k)) {
            self.release(found)?;
            return Err(ErrorCode::Access.into());
        }
        let mut oflags = oflags;
        if found.dir_required {
            // `name/`: a directory, never created as a file.
            if oflags.contains(types::OpenFlags::CREATE) {
                self.release(found)?;
                return Err(ErrorCode::IsDirectory.into());
            }
            oflags |= types::OpenFlags::DIRECTORY;
        }
        let (at, name, real) = (found.at(), found.name.clone(), found.real.take());
        let opened =
            HostDescriptor::open_at(&mut self.inner, at, nofollow(), name, oflags, flags).await;
        self.release(found)?;
        let opened = opened?;
        if let (Some(real), Descriptor::Dir(_)) = (real, self.inner.table.get(&opened)?) {
            self.guard.dirs.insert(opened.rep(), real);
        }
        Ok(opened)
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        guarded!(self, fd, path, follows(path_flags), |at, name| {
            HostDescriptor::stat_at(
                &mut self.inner,
                at,
                nofollow_if(path_flags, self.guard.active),
                name,
            )
        })
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        guarded!(self, fd, path, follows(path_flags), |at, name| {
            HostDescriptor::set_times_at(
                &mut self.inner,
                at,
                nofollow_if(path_flags, self.guard.active),
                name,
                atim,
                mtim,
            )
        })
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        guarded!(self, fd, path, follows(path_flags), |at, name| {
            HostDescriptor::metadata_hash_at(
                &mut self.inner,
                at,
                nofollow_if(path_flags, self.guard.active),
                name,
            )
        })
    }

    async fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        guarded!(self, fd, path, false, |at, name| {
            HostDescriptor::readlink_at(&mut self.inner, at, name)
        })
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        guarded!(self, fd, path, false, |at, name| {
            HostDescriptor::create_directory_at(&mut self.inner, at, name)
        })
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        guarded!(self, fd, path, false, |at, name| {
            HostDescriptor::remove_directory_at(&mut self.inner, at, name)
        })
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        guarded!(self, fd, path, false, |at, name| {
            HostDescriptor::unlink_file_at(&mut self.inner, at, name)
        })
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        if !self.guard.active {
            return HostDescriptor::symlink_at(&mut self.inner, fd, src_path, dest_path).await;
        }
        // The link's text may name anything: following it later is checked.
        let found = self.find(&fd, &dest_path, false, true)?;
        if let Err(e) = self.refuse_guard(&found) {
            self.release(found)?;
            return Err(e);
        }
        let (at, name) = (found.at(), found.name.clone());
        let result = HostDescriptor::symlink_at(&mut self.inner, at, src_path, name).await;
        self.release(found)?;
        result
    }

    async fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        if !self.guard.active {
            return HostDescriptor::link_at(
                &mut self.inner,
                fd,
                old_path_flags,
                old_path,
                new_descriptor,
                new_path,
            )
            .await;
        }
        let (old, new) = self.find_pair(&fd, &old_path, &new_descriptor, &new_path, false)?;
        let result = HostDescriptor::link_at(
            &mut self.inner,
            old.at(),
            old_path_flags,
            old.name.clone(),
            new.at(),
            new.name.clone(),
        )
        .await;
        self.release(old)?;
        self.release(new)?;
        result
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        if !self.guard.active {
            return HostDescriptor::rename_at(&mut self.inner, fd, old_path, new_fd, new_path)
                .await;
        }
        let (old, new) = self.find_pair(&fd, &old_path, &new_fd, &new_path, true)?;
        let result = HostDescriptor::rename_at(
            &mut self.inner,
            old.at(),
            old.name.clone(),
            new.at(),
            new.name.clone(),
        )
        .await;
        self.release(old)?;
        self.release(new)?;
        result
    }

    async fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let mut skip = Vec::new();
        if self.guard.active
            && let Descriptor::Dir(dir) = self.inner.table.get(&fd)?
        {
            let real = self.real_of(fd.rep(), dir)?;
            if self.guard.hidden.covers(&real) {
                return Err(ErrorCode::NoEntry.into());
            }
            skip = self.guard.hidden.children_of(&real);
        }
        let stream = HostDescriptor::read_directory(&mut self.inner, fd).await?;
        if !skip.is_empty() {
            self.guard.streams.insert(stream.rep(), skip);
        }
        Ok(stream)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.guard.dirs.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    // --- No path, nothing to guard: the descriptor was obtained through the checks above. ---

    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.inner, fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.inner, fd).await
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.inner, fd).await
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorType> {
        HostDescriptor::get_type(&mut self.inner, fd).await
    }

    async fn set_size(&mut self, fd: Resource<Descriptor>, size: types::Filesize) -> FsResult<()> {
        HostDescriptor::set_size(&mut self.inner, fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times(&mut self.inner, fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.inner, fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        HostDescriptor::write(&mut self.inner, fd, buf, offset).await
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.inner, fd).await
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorStat> {
        HostDescriptor::stat(&mut self.inner, fd).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.inner, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        HostDescriptor::write_via_stream(&mut self.inner, fd, offset)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        HostDescriptor::append_via_stream(&mut self.inner, fd)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.inner, a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.inner, fd).await
    }
}

/// After a guarded lookup the final name is resolved: do not follow it again. Unguarded, the
/// caller's flags go through unchanged.
fn nofollow_if(flags: types::PathFlags, guarded: bool) -> types::PathFlags {
    if guarded { nofollow() } else { flags }
}

impl GuardView<'_> {
    /// Both sides of a link or rename. With `guard_ancestors`, moving from or to a strict
    /// ancestor of a hidden path is refused.
    fn find_pair(
        &mut self,
        old_fd: &Resource<Descriptor>,
        old_path: &str,
        new_fd: &Resource<Descriptor>,
        new_path: &str,
        guard_ancestors: bool,
    ) -> FsResult<(Found, Found)> {
        let old = self.find(old_fd, old_path, false, true)?;
        let new = match self.find(new_fd, new_path, false, true) {
            Ok(new) => new,
            Err(e) => {
                self.release(old)?;
                return Err(e);
            }
        };
        if guard_ancestors {
            let refused = self
                .refuse_guard(&old)
                .and_then(|()| self.refuse_guard(&new));
            if let Err(e) = refused {
                self.release(old)?;
                self.release(new)?;
                return Err(e);
            }
        }
        Ok((old, new))
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
                (Some(entry), Some(skip)) => skip.iter().any(|name| *name == entry.name),
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
