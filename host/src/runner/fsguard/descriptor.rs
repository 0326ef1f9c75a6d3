//! `wasi:filesystem/types.descriptor`, guarded: each path-based method resolves its path(s)
//! with [`GuardView::find`] and calls wasmtime-wasi's implementation on the result; the others
//! delegate unchanged (their descriptor was obtained through the checks).

use rustix::fs::FileType;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{self, ErrorCode, HostDescriptor};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsResult};

use super::{Found, GuardView, follows, nofollow};

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
