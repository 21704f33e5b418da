//! Path resolution shared by every reader: one component at a time from the root, `..`
//! back up the walk (never above the root), symlinks in earlier components followed
//! (absolute targets from the root of the same file system, relative ones from the link's
//! directory), at most `MAX_SYMLINK_HOPS` of them per path.
//!
//! A reader only says how to look a name up in a directory, what kind a node is and what a
//! link holds ([`Tree`]); the walk, its bounds and its errors are the same for all.

use std::collections::VecDeque;

use super::{FileKind, MAX_SYMLINK_HOPS};
use crate::guest::error::{GuestError, GuestResult};

/// Longest symlink target followed (Linux's PATH_MAX).
pub const MAX_LINK_TARGET: usize = 4096;
/// Components walked for one path at most, counting those symlinks add.
const MAX_COMPONENTS: usize = 4096;
/// Directories deep a path may go. Readers whose node is a path pay for each lookup in
/// proportion to its depth, so depth bounds the work of one resolution; real paths are
/// far shallower.
pub const MAX_DEPTH: usize = 256;

/// What the resolver needs from a file system.
pub trait Tree {
    /// A handle on an inode: an inode number, or the symlink-free path to it.
    type Node;

    fn root(&self) -> GuestResult<Self::Node>;

    /// The entry `name` of the directory `dir` and its kind, `None` when there is none.
    /// Case rules are the file system's.
    fn lookup(&self, dir: &Self::Node, name: &[u8]) -> GuestResult<Option<(Self::Node, FileKind)>>;

    fn kind(&self, node: &Self::Node) -> GuestResult<FileKind>;

    /// A symlink's target as stored.
    fn link_target(&self, node: &Self::Node) -> GuestResult<Vec<u8>>;
}

/// Whether a symlink in the last component is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// Like lstat: the node of the link itself.
    NoFollow,
    /// Like stat/open: the node the link leads to.
    Follow,
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Resolves `path` (absolute; a relative path is taken from the root) to its node.
pub fn resolve<T: Tree>(tree: &T, path: &[u8], last: Last) -> GuestResult<T::Node> {
    resolve_with_kind(tree, path, last).map(|(node, _)| node)
}

/// [`resolve`], with the kind of the node found.
pub fn resolve_with_kind<T: Tree>(
    tree: &T,
    path: &[u8],
    last: Last,
) -> GuestResult<(T::Node, FileKind)> {
    let root = tree.root()?;
    let root_kind = tree.kind(&root)?;
    // The walk so far: each directory entered, with its kind, the root first.
    let mut walk = vec![(root, root_kind)];
    let mut pending: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
    let mut hops = 0usize;
    let mut walked = 0usize;
    while let Some(name) = pending.pop_front() {
        walked += 1;
        if walked > MAX_COMPONENTS {
            return Err(GuestError::Limit(format!(
                "{}: more than {MAX_COMPONENTS} path components",
                shown(path)
            )));
        }
        if name == b".." {
            if walk.len() > 1 {
                walk.pop();
            }
            continue;
        }
        let Some((dir, dir_kind)) = walk.last() else {
            return Err(GuestError::NotFound(shown(path)));
        };
        if *dir_kind != FileKind::Dir {
            return Err(GuestError::WrongKind {
                path: shown(path),
                detail: "a component is not a directory".into(),
            });
        }
        if walk.len() > MAX_DEPTH {
            return Err(GuestError::Limit(format!(
                "{}: deeper than {MAX_DEPTH} directories",
                shown(path)
            )));
        }
        let Some((node, kind)) = tree.lookup(dir, &name)? else {
            return Err(GuestError::NotFound(shown(path)));
        };
        let follow = !pending.is_empty() || last == Last::Follow;
        if follow && kind == FileKind::Symlink {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(GuestError::Limit(format!(
                    "{}: more than {MAX_SYMLINK_HOPS} symlinks (a loop?)",
                    shown(path)
                )));
            }
            let target = tree.link_target(&node)?;
            if target.len() > MAX_LINK_TARGET {
                return Err(GuestError::Limit(format!(
                    "{}: a symlink target is longer than {MAX_LINK_TARGET} bytes",
                    shown(path)
                )));
            }
            if target.first() == Some(&b'/') {
                walk.truncate(1);
            }
            let parts: Vec<&[u8]> = components(&target).collect();
            for c in parts.into_iter().rev() {
                pending.push_front(c.to_vec());
            }
            continue;
        }
        walk.push((node, kind));
    }
    walk.pop().ok_or_else(|| GuestError::NotFound(shown(path)))
}

/// `dir/name` for readers whose node is the symlink-free path.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = dir.to_vec();
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Paths to (kind, link target); nodes are the symlink-free paths.
    struct Fake(HashMap<Vec<u8>, (FileKind, Vec<u8>)>);

    impl Fake {
        fn new(entries: &[(&str, FileKind, &str)]) -> Self {
            let mut m = HashMap::new();
            m.insert(b"/".to_vec(), (FileKind::Dir, Vec::new()));
            for (p, k, t) in entries {
                m.insert(p.as_bytes().to_vec(), (*k, t.as_bytes().to_vec()));
            }
            Fake(m)
        }
    }

    impl Tree for Fake {
        type Node = Vec<u8>;
        fn root(&self) -> GuestResult<Vec<u8>> {
            Ok(b"/".to_vec())
        }
        fn lookup(&self, dir: &Vec<u8>, name: &[u8]) -> GuestResult<Option<(Vec<u8>, FileKind)>> {
            let p = join(dir, name);
            Ok(self.0.get(&p).map(|(k, _)| (p.clone(), *k)))
        }
        fn kind(&self, node: &Vec<u8>) -> GuestResult<FileKind> {
            Ok(self.0[node].0)
        }
        fn link_target(&self, node: &Vec<u8>) -> GuestResult<Vec<u8>> {
            Ok(self.0[node].1.clone())
        }
    }

    fn fake() -> Fake {
        use FileKind::*;
        Fake::new(&[
            ("/usr", Dir, ""),
            ("/usr/lib", Dir, ""),
            ("/usr/lib/os-release", File, ""),
            ("/lib", Symlink, "usr/lib"),
            ("/etc", Dir, ""),
            ("/etc/os-release", Symlink, "../usr/lib/os-release"),
            ("/etc/abs", Symlink, "/usr/lib"),
            ("/loop1", Symlink, "loop2"),
            ("/loop2", Symlink, "/loop1"),
        ])
    }

    #[test]
    fn follows_links_and_dotdot() {
        let f = fake();
        let r = |p: &str, l| resolve(&f, p.as_bytes(), l).map(|n| String::from_utf8(n).unwrap());
        assert_eq!(
            r("/lib/os-release", Last::NoFollow).unwrap(),
            "/usr/lib/os-release"
        );
        assert_eq!(
            r("/etc/os-release", Last::NoFollow).unwrap(),
            "/etc/os-release"
        );
        assert_eq!(
            r("/etc/os-release", Last::Follow).unwrap(),
            "/usr/lib/os-release"
        );
        assert_eq!(
            r("/etc/abs/../lib/./os-release", Last::NoFollow).unwrap(),
            "/usr/lib/os-release"
        );
        assert_eq!(r("/../../etc", Last::NoFollow).unwrap(), "/etc");
        assert_eq!(r("/", Last::Follow).unwrap(), "/");
        assert!(matches!(
            r("/nope", Last::Follow),
            Err(GuestError::NotFound(_))
        ));
        assert!(matches!(
            r("/usr/lib/os-release/x", Last::Follow),
            Err(GuestError::WrongKind { .. })
        ));
        assert!(matches!(
            r("/loop1/x", Last::NoFollow),
            Err(GuestError::Limit(_))
        ));
        assert!(matches!(
            r("/loop1", Last::Follow),
            Err(GuestError::Limit(_))
        ));
        assert_eq!(r("/loop1", Last::NoFollow).unwrap(), "/loop1");
        let deep = "/usr/..".repeat(10_000);
        assert!(matches!(r(&deep, Last::Follow), Err(GuestError::Limit(_))));
    }

    #[test]
    fn bounds_depth() {
        use FileKind::*;
        // /d is a directory whose entry `d` is itself (a directory loop).
        struct Loop;
        impl Tree for Loop {
            type Node = ();
            fn root(&self) -> GuestResult<()> {
                Ok(())
            }
            fn lookup(&self, _: &(), _: &[u8]) -> GuestResult<Option<((), FileKind)>> {
                Ok(Some(((), Dir)))
            }
            fn kind(&self, _: &()) -> GuestResult<FileKind> {
                Ok(Dir)
            }
            fn link_target(&self, _: &()) -> GuestResult<Vec<u8>> {
                Ok(Vec::new())
            }
        }
        assert!(resolve(&Loop, "/d".repeat(MAX_DEPTH).as_bytes(), Last::Follow).is_ok());
        let deeper = "/d".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            resolve(&Loop, deeper.as_bytes(), Last::Follow),
            Err(GuestError::Limit(_))
        ));
    }
}
