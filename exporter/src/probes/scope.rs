//! `probes.scope`: from the configured cgroup path to what the kernel
//! side compares (`ebpf/include/tapio_scope.h`): the directory's cgroup id
//! and its depth below the cgroup2 root.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

/// `.rodata` globals of the scoped objects (process, network, dns).
pub const GLOBAL_CGROUP: &str = "tapio_scope_cgroup";
pub const GLOBAL_LEVEL: &str = "tapio_scope_level";
/// The dns probe's flows of in-scope queries: sized only when scoped.
pub const MAP_DNS_FLOWS: &str = "tapio_dns_scope_flows";
pub const DNS_FLOWS_SCOPED: u32 = 16384;

/// A resolved scope: tasks whose cgroup ancestor at `level` has id `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupScope {
    /// The cgroup id: the directory's inode number on cgroup2 (what
    /// `bpf_get_current_ancestor_cgroup_id` returns).
    pub id: u64,
    /// Depth below the cgroup2 root (the root is 0).
    pub level: u32,
}

/// Resolve `cgroup` (as `probes.scope.cgroup` documents it) against the
/// cgroup2 mount `root`.
pub fn resolve(root: &Path, cgroup: &str) -> Result<CgroupScope, String> {
    if cgroup.trim().is_empty() {
        return Err("cannot be empty (leave probes.scope.cgroup out to observe every task)".into());
    }
    let given = Path::new(cgroup);
    // The directory itself, or a cgroup path as /proc/<pid>/cgroup prints
    // it (absolute, from the cgroup2 root).
    let rel = given
        .strip_prefix(root)
        .or_else(|_| given.strip_prefix("/"))
        .unwrap_or(given);
    let mut level = 0u32;
    for c in rel.components() {
        match c {
            Component::Normal(_) => level += 1,
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "{cgroup:?}: a cgroup path below {} without `..`",
                    root.display()
                ))
            }
        }
    }
    let dir = root.join(rel);
    let meta = std::fs::metadata(&dir).map_err(|e| {
        format!(
            "{cgroup:?}: no cgroup {} ({e}); it must exist when Tapio starts",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "{cgroup:?}: {} is not a cgroup directory",
            dir.display()
        ));
    }
    Ok(CgroupScope {
        id: meta.ino(),
        level,
    })
}

/// [`resolve`] against this node's cgroup2 mount.
pub fn resolve_here(cgroup: &str) -> Result<CgroupScope, String> {
    let root = super::cgroup2_root().ok_or("no cgroup v2 mount on this node")?;
    resolve(Path::new(&root), cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("kubepods.slice/pod1")).expect("mkdir");
        d
    }

    #[test]
    fn relative_proc_style_and_mount_paths_name_the_same_cgroup() {
        let d = root();
        let ino = std::fs::metadata(d.path().join("kubepods.slice/pod1"))
            .expect("stat")
            .ino();
        let want = CgroupScope { id: ino, level: 2 };
        let full = d.path().join("kubepods.slice/pod1");
        for p in [
            "kubepods.slice/pod1",
            "./kubepods.slice/pod1/",
            "/kubepods.slice/pod1",
            full.to_str().expect("utf-8"),
        ] {
            assert_eq!(resolve(d.path(), p), Ok(want), "{p}");
        }
        let top = resolve(d.path(), "kubepods.slice").expect("top");
        assert_eq!(top.level, 1);
        assert_ne!(top.id, ino);
    }

    #[test]
    fn a_missing_empty_or_escaping_path_is_refused() {
        let d = root();
        let e = resolve(d.path(), "kubepods.slice/nope").expect_err("missing");
        assert!(e.contains("must exist"), "{e}");
        assert!(resolve(d.path(), " ").is_err());
        let e = resolve(d.path(), "kubepods.slice/../x").expect_err("..");
        assert!(e.contains(".."), "{e}");
        std::fs::write(d.path().join("kubepods.slice/file"), "").expect("write");
        assert!(resolve(d.path(), "kubepods.slice/file").is_err());
    }
}
