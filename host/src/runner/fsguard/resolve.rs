//! Path resolution for the guard: split a guest path into parent + final name, open the parent
//! beneath the descriptor (`openat2` with `RESOLVE_BENEATH`, never past it), learn real host
//! paths from `/proc/self/fd`, follow final symlinks by hand, and check against hidden paths.
//!
//! Everything here is synchronous and non-blocking: `openat2` of a parent uses `O_DIRECTORY`
//! (a FIFO or device there is `ENOTDIR` before it is opened) and the final name is only ever
//! `statat`/`readlinkat`'d, never opened.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;

/// Symlinks followed by hand in one lookup before giving up with `loop`.
pub const MAX_LINKS: usize = 16;

/// The real host paths no guest may reach. A path is covered when it equals an entry or lies
/// below one (component-wise: `/ws/.gitx` is not covered by `/ws/.git`).
#[derive(Debug, Default)]
pub struct Hidden(Vec<PathBuf>);

impl Hidden {
    pub fn add(&mut self, path: PathBuf) {
        if !self.0.contains(&path) {
            self.0.push(path);
        }
    }

    /// `path` is hidden or lies below a hidden path.
    pub fn covers(&self, path: &Path) -> bool {
        self.0.iter().any(|h| path.starts_with(h))
    }

    /// `path` is a strict ancestor of a hidden path: moving or replacing it would move the
    /// hidden path (or let the guest plant one).
    pub fn guards(&self, path: &Path) -> bool {
        self.0.iter().any(|h| h.starts_with(path) && h != path)
    }

    /// Names of hidden entries directly inside `dir` (left out of its listing).
    pub fn children_of(&self, dir: &Path) -> Vec<String> {
        self.0
            .iter()
            .filter(|h| h.parent() == Some(dir))
            .filter_map(|h| h.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }
}

/// A guest path split lexically into the part that names the parent directory and the final
/// name. `name` is `.` when the path names a directory itself (`.`, `a/..`, `a/.`).
#[derive(Debug, PartialEq, Eq)]
pub struct Split<'p> {
    pub parent: &'p str,
    pub name: &'p str,
    /// The path ended in `/`: the final component must be a directory (and is followed).
    pub dir_required: bool,
}

pub fn split(path: &str) -> Result<Split<'_>, ErrorCode> {
    if path.is_empty() {
        return Err(ErrorCode::NoEntry);
    }
    if path.starts_with('/') {
        // cap-std refuses absolute paths as an escape; so do we, the same way.
        return Err(ErrorCode::NotPermitted);
    }
    let trimmed = path.trim_end_matches('/');
    let dir_required = trimmed.len() != path.len();
    let (parent, name) = match trimmed.rfind('/') {
        None => ("", trimmed),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
    };
    if name == "." || name == ".." {
        let parent = if trimmed == "." { "" } else { trimmed };
        return Ok(Split {
            parent,
            name: ".",
            dir_required: false,
        });
    }
    Ok(Split {
        parent,
        name,
        dir_required,
    })
}

/// What a lookup found: the directory that holds the final name (`None`: the descriptor the
/// guest passed), the name to use in it without following, its real host path (when hidden
/// paths are checked) and its type (`None`: it does not exist).
pub struct Located {
    pub parent: Option<OwnedFd>,
    pub name: String,
    pub real: Option<PathBuf>,
    pub kind: Option<FileType>,
    /// The guest's path ended in `/`: the target must be a directory.
    pub dir_required: bool,
}

/// Whether walking `parent` (as written, `..` taken lexically) from `base_real` steps on a
/// hidden path at any point.
fn passes_hidden(base_real: &Path, parent: &str, hidden: &Hidden) -> bool {
    let mut at = base_real.to_path_buf();
    for part in parent.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                at.pop();
            }
            part => {
                at.push(part);
                if hidden.covers(&at) {
                    return true;
                }
            }
        }
    }
    false
}

/// Resolves `path` relative to `base`. With `base_real` (the real path of `base`), every step
/// is checked against `hidden` and a hidden path fails with `no-entry`. With `follow`, a final
/// symlink is read and its target resolved the same way (relative to the link's directory,
/// never above `base`), up to [`MAX_LINKS`] times.
pub fn locate(
    base: BorrowedFd<'_>,
    base_real: Option<&Path>,
    hidden: &Hidden,
    path: &str,
    follow: bool,
) -> Result<Located, ErrorCode> {
    let mut path = path.to_owned();
    for _ in 0..=MAX_LINKS {
        let parts = split(&path)?;
        let follow = follow || parts.dir_required;
        // Before the kernel sees the parent, walk it as written: a step into a hidden path
        // is `no-entry` here, so the kernel's answer (not-a-directory, a symlink's target, a
        // `..` that works) can never tell what exists inside one.
        if let Some(base_real) = base_real
            && passes_hidden(base_real, parts.parent, hidden)
        {
            return Err(ErrorCode::NoEntry);
        }
        let parent = if parts.parent.is_empty() {
            None
        } else {
            Some(open_dir_beneath(base, parts.parent)?)
        };
        let dir = parent.as_ref().map_or(base, |fd| fd.as_fd());
        let real = match base_real {
            None => None,
            Some(base_real) => {
                let parent_real = match &parent {
                    None => base_real.to_path_buf(),
                    Some(fd) => real_path(fd.as_fd())?,
                };
                if hidden.covers(&parent_real) {
                    return Err(ErrorCode::NoEntry);
                }
                let target = if parts.name == "." {
                    parent_real
                } else {
                    parent_real.join(parts.name)
                };
                if hidden.covers(&target) {
                    return Err(ErrorCode::NoEntry);
                }
                Some(target)
            }
        };
        let kind = match rustix::fs::statat(dir, parts.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(code(e)),
        };
        if follow && kind == Some(FileType::Symlink) {
            let target = rustix::fs::readlinkat(dir, parts.name, Vec::new()).map_err(code)?;
            let target = target
                .into_string()
                .map_err(|_| ErrorCode::IllegalByteSequence)?;
            if target.starts_with('/') {
                // cap-std treats an absolute symlink as an escape.
                return Err(ErrorCode::NotPermitted);
            }
            let mut next = if parts.parent.is_empty() {
                target
            } else {
                format!("{}/{target}", parts.parent)
            };
            if parts.dir_required {
                next.push('/');
            }
            path = next;
            continue;
        }
        if parts.dir_required && kind.is_some_and(|k| k != FileType::Directory) {
            return Err(ErrorCode::NotDirectory);
        }
        // No trailing `/` goes to the inner call: the kernel would follow a symlink swapped in
        // since the check. `dir_required` carries the meaning instead.
        return Ok(Located {
            parent,
            name: parts.name.to_owned(),
            real,
            kind,
            dir_required: parts.dir_required,
        });
    }
    Err(ErrorCode::Loop)
}

/// The real host paths one `hide` entry (normalised, relative) stands for in the preopened
/// directory `root` (real path `root_real`): the entry's own path, with its parent resolved (a
/// symlinked ancestor must not move it out of sight), and, when the entry is itself a symlink,
/// its target too (else `.git` → `real-git-dir` would leave `real-git-dir/config` readable
/// under either name) — resolved from the grant's root, so a target such as `../.env.shared`
/// is found, and by the host when it lies outside this grant (another grant may reach it).
///
/// Fails closed: only "does not exist" is taken as absent; any other error (out of file
/// descriptors, permissions, a racing rename) is an error, never a smaller hidden set.
pub fn anchor(
    root: BorrowedFd<'_>,
    root_real: &Path,
    entry: &str,
) -> Result<Vec<PathBuf>, ErrorCode> {
    let absent = |e: &ErrorCode| matches!(e, ErrorCode::NoEntry | ErrorCode::NotDirectory);
    let (parent, name) = match entry.rsplit_once('/') {
        None => (None, entry),
        Some((parent, name)) => (Some(parent), name),
    };
    let mut out = vec![root_real.join(entry)];
    let opened = match parent.map(|p| open_dir_beneath(root, p)) {
        None => None,
        Some(Ok(fd)) => Some(fd),
        // The parent does not exist: only the path as written.
        Some(Err(e)) if absent(&e) => return Ok(out),
        Some(Err(e)) => return Err(e),
    };
    let (dir, parent_real) = match &opened {
        None => (root, root_real.to_path_buf()),
        Some(fd) => (fd.as_fd(), real_path(fd.as_fd())?),
    };
    out.push(parent_real.join(name));
    let kind = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => FileType::from_raw_mode(st.st_mode),
        Err(Errno::NOENT) => return Ok(out),
        Err(e) => return Err(code(e)),
    };
    if kind == FileType::Symlink {
        let target = rustix::fs::openat2(
            root,
            entry,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        );
        match target {
            Ok(target) => out.push(real_path(target.as_fd())?),
            // Dangling: nothing to hide behind it (yet; a later target is caught per lookup
            // through the link's own hidden path).
            Err(Errno::NOENT) => {}
            // Out of this grant (or absolute): hide where the host says it leads, in case
            // another grant reaches it.
            Err(Errno::XDEV) | Err(Errno::LOOP) => {
                if let Ok(real) = std::fs::canonicalize(parent_real.join(name)) {
                    out.push(real);
                }
            }
            Err(e) => return Err(code(e)),
        }
    }
    Ok(out)
}

/// Opens `path` as a directory beneath `base`: the kernel refuses `..` above `base`, absolute
/// symlinks and magic links (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, as cap-std does), and
/// `O_DIRECTORY` makes a FIFO or device an error before anything would block on it.
fn open_dir_beneath(base: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, ErrorCode> {
    rustix::fs::openat2(
        base,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        // An escape attempt: what cap-std reports for the same path.
        Errno::XDEV => ErrorCode::NotPermitted,
        other => code(other),
    })
}

/// The real host path of an open directory, from `/proc/self/fd`. Fails closed: without
/// `/proc` nothing can be checked, so nothing is allowed.
pub fn real_path(fd: BorrowedFd<'_>) -> Result<PathBuf, ErrorCode> {
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(path) if path.is_absolute() => Ok(path),
        Ok(_) | Err(_) => {
            tracing::warn!(
                "fsguard: cannot learn a directory's real path from /proc/self/fd; refusing"
            );
            Err(ErrorCode::Access)
        }
    }
}

/// The WASI error code for an errno, as wasmtime-wasi maps it.
fn code(errno: Errno) -> ErrorCode {
    ErrorCode::from(io::Error::from(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(parent: &'static str, name: &'static str, dir_required: bool) -> Split<'static> {
        Split {
            parent,
            name,
            dir_required,
        }
    }

    #[test]
    fn fsguard_paths_split_into_parent_and_name() {
        assert_eq!(split("a").unwrap(), s("", "a", false));
        assert_eq!(split("a/b/c").unwrap(), s("a/b", "c", false));
        assert_eq!(split(".//.git").unwrap(), s("./", ".git", false));
        assert_eq!(split(".git/").unwrap(), s("", ".git", true));
        assert_eq!(split(".git//").unwrap(), s("", ".git", true));
        assert_eq!(split(".").unwrap(), s("", ".", false));
        assert_eq!(split("./").unwrap(), s("", ".", false));
        assert_eq!(split("..").unwrap(), s("..", ".", false));
        assert_eq!(split("a/..").unwrap(), s("a/..", ".", false));
        assert_eq!(split("a/./").unwrap(), s("a/.", ".", false));
        assert_eq!(split("").unwrap_err(), ErrorCode::NoEntry);
        assert_eq!(split("/etc").unwrap_err(), ErrorCode::NotPermitted);
    }

    #[test]
    fn fsguard_hidden_covers_below_and_guards_above() {
        let mut h = Hidden::default();
        h.add(PathBuf::from("/ws/.git"));
        h.add(PathBuf::from("/ws/config/private"));
        assert!(h.covers(Path::new("/ws/.git")));
        assert!(h.covers(Path::new("/ws/.git/config")));
        assert!(!h.covers(Path::new("/ws/.gitx")));
        assert!(!h.covers(Path::new("/ws")));
        assert!(h.guards(Path::new("/ws/config")));
        assert!(h.guards(Path::new("/ws")));
        assert!(!h.guards(Path::new("/ws/config/private")));
        assert!(!h.guards(Path::new("/ws/other")));
        assert_eq!(h.children_of(Path::new("/ws")), [".git"]);
        assert_eq!(h.children_of(Path::new("/ws/config")), ["private"]);
    }

    #[test]
    fn fsguard_anchors_follow_symlinked_entries_and_ancestors() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real-git")).unwrap();
        std::fs::create_dir_all(root.join("cfg/private")).unwrap();
        symlink("real-git", root.join(".git")).unwrap();
        symlink("cfg", root.join("config")).unwrap();
        let dir = std::fs::File::open(&root).unwrap();
        let git = anchor(dir.as_fd(), &root, ".git").unwrap();
        assert!(git.contains(&root.join(".git")) && git.contains(&root.join("real-git")));
        let private = anchor(dir.as_fd(), &root, "config/private").unwrap();
        assert!(private.contains(&root.join("cfg/private")), "{private:?}");
        assert_eq!(
            anchor(dir.as_fd(), &root, "absent/x").unwrap(),
            [root.join("absent/x")]
        );
        // A link whose text climbs out of its own directory (`app/.env -> ../.env.shared`):
        // its target is hidden too.
        std::fs::create_dir(root.join("app")).unwrap();
        std::fs::write(root.join(".env.shared"), "SECRET=1").unwrap();
        symlink("../.env.shared", root.join("app/.env")).unwrap();
        let env = anchor(dir.as_fd(), &root, "app/.env").unwrap();
        assert!(env.contains(&root.join(".env.shared")), "{env:?}");
        // A link out of the grant: the host's answer is hidden (another grant may reach it).
        let outside = tempfile::tempdir().unwrap();
        let outside_real = outside.path().canonicalize().unwrap();
        symlink(&outside_real, root.join("out")).unwrap();
        let out = anchor(dir.as_fd(), &root, "out").unwrap();
        assert!(out.contains(&outside_real), "{out:?}");
    }

    #[test]
    fn fsguard_locate_resolves_symlinks_and_refuses_hidden_targets() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("ok.txt"), "x").unwrap();
        symlink(".git/config", root.join("rel")).unwrap();
        symlink("sub/../rel", root.join("chain")).unwrap();
        symlink(".git", root.join("dirlink")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink(root.join("ok.txt"), root.join("abs")).unwrap();
        let dir = std::fs::File::open(&root).unwrap();
        let mut hidden = Hidden::default();
        hidden.add(root.join(".git"));
        let find = |path: &str, follow: bool| {
            locate(dir.as_fd(), Some(&root), &hidden, path, follow).map(|l| (l.name, l.real))
        };
        for path in [
            ".git/config",
            "./.git/config",
            ".//.git",
            "sub/../.git/config",
            ".git/",
            "dirlink/config",
            "dirlink/",
            // Inside the hidden tree the kernel's answer would tell what exists there.
            ".git/config/x",
            ".git/nothing/x",
            ".git/../ok.txt",
        ] {
            assert_eq!(find(path, false).unwrap_err(), ErrorCode::NoEntry, "{path}");
        }
        for path in ["rel", "chain"] {
            assert_eq!(find(path, true).unwrap_err(), ErrorCode::NoEntry, "{path}");
            // Not followed: the link itself is not hidden.
            assert_eq!(find(path, false).unwrap().0, path);
        }
        assert_eq!(find("loop", true).unwrap_err(), ErrorCode::Loop);
        assert_eq!(find("abs", true).unwrap_err(), ErrorCode::NotPermitted);
        assert_eq!(find("../x", false).unwrap_err(), ErrorCode::NotPermitted);
        let (name, real) = find("sub/../ok.txt", true).unwrap();
        assert_eq!(name, "ok.txt");
        assert_eq!(real.unwrap(), root.join("ok.txt"));
        assert_eq!(find("./", false).unwrap().1.unwrap(), root);
    }
}
