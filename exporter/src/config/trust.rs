//! Whether a config file can be trusted: Tapio runs as root and the file's
//! `policy` sections decide what the kernel denies, so whoever can change
//! the file (or swap it, or swap a directory or symlink on the way to it)
//! controls the enforcement. Like OpenSSH's `StrictModes`, every file and
//! directory on the path must be owned by root (or by the user running
//! Tapio) and not writable by group or others.
//!
//! Two walks cover the path: the path as written (the directory Tapio
//! watches for reloads is its parent) and the path with every symlink
//! resolved (where the bytes really are). In both, each entry's directory
//! must keep others from replacing the entry. A sticky directory (`/tmp`)
//! does that for entries owned by a trusted user, except the file's own
//! directory: a watched directory others can create files in is refused
//! outright, sticky or not, which is what refuses a symlink into `/tmp`.
//!
//! The checks are `stat`s on paths, so a swap between the check and the
//! read is possible in principle; it needs write access to one of the
//! directories checked, which is exactly what the check refuses.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// `S_ISVTX`: only an entry's owner may rename or delete it.
const STICKY: u32 = 0o1000;
/// Group- or other-writable.
const GO_WRITE: u32 = 0o022;

/// Why `path` cannot be trusted as a config file, or `Ok` when it can.
pub fn check(path: &Path) -> Result<(), String> {
    check_as(path, effective_uid())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// [`check`] for a process running as `uid` (root is always trusted).
fn check_as(path: &Path, uid: u32) -> Result<(), String> {
    let trusted = |m: &Metadata| m.uid() == 0 || m.uid() == uid;
    let file = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !file.is_file() {
        return Err("is not a regular file".into());
    }
    if let Some(why) = writable_by_others(&file, &trusted) {
        return Err(format!("the file {why}{FIX}"));
    }
    let written = absolute(path)?;
    let real = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    for p in [&written, &real] {
        walk(p, &trusted)?;
    }
    Ok(())
}

const FIX: &str = "; a user who can change it can change what Tapio enforces \
                   (make it owned by root and not writable by group or others: chown root; chmod go-w)";

/// Why a file or directory with `m` can be changed by someone untrusted.
fn writable_by_others(m: &Metadata, trusted: &impl Fn(&Metadata) -> bool) -> Option<String> {
    let mode = m.permissions().mode() & 0o7777;
    if !trusted(m) {
        return Some(format!("is owned by uid {} (mode {mode:04o})", m.uid()));
    }
    if mode & GO_WRITE != 0 {
        let who = if mode & 0o002 != 0 {
            "world-writable"
        } else {
            "group-writable"
        };
        return Some(format!("is {who} (mode {mode:04o})"));
    }
    None
}

/// Each entry of `path` (absolute, not normalised) in its directory.
fn walk(path: &Path, trusted: &impl Fn(&Metadata) -> bool) -> Result<(), String> {
    let mut dir = PathBuf::from("/");
    let parts: Vec<_> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let entry = dir.join(part);
        // The directory the entry is looked up in (symlinks followed).
        let dmeta =
            std::fs::metadata(&dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
        if let Some(why) = writable_by_others(&dmeta, trusted) {
            let last = i + 1 == parts.len();
            let emeta = std::fs::symlink_metadata(&entry)
                .map_err(|e| format!("cannot stat {}: {e}", entry.display()))?;
            let sticky_keeps =
                dmeta.permissions().mode() & STICKY != 0 && dmeta.uid() == 0 && trusted(&emeta);
            if last || !sticky_keeps {
                let what = if last {
                    "the directory it is in (watched for reloads)"
                } else {
                    "a directory on its path"
                };
                return Err(format!("{what}, {}, {why}{FIX}", dir.display()));
            }
        }
        dir = entry;
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("cannot read the cwd: {e}"))?;
    Ok(cwd.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn uid_of(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").uid()
    }

    /// A config in a private directory, and the uid that owns both.
    fn setup() -> (tempfile::TempDir, PathBuf, u32) {
        let d = tempfile::tempdir().expect("tempdir");
        chmod(d.path(), 0o755);
        let f = d.path().join("tapio.yaml");
        std::fs::write(&f, "probes: {}\n").expect("write");
        chmod(&f, 0o644);
        let uid = uid_of(&f);
        (d, f, uid)
    }

    #[test]
    fn a_private_file_is_trusted() {
        let (_d, f, uid) = setup();
        assert_eq!(check_as(&f, uid), Ok(()));
    }

    #[test]
    fn group_or_world_writable_file_is_refused() {
        let (_d, f, uid) = setup();
        chmod(&f, 0o664);
        let e = check_as(&f, uid).expect_err("group-writable");
        assert!(
            e.starts_with("the file is group-writable (mode 0664)"),
            "{e}"
        );
        chmod(&f, 0o646);
        let e = check_as(&f, uid).expect_err("world-writable");
        assert!(
            e.starts_with("the file is world-writable (mode 0646)"),
            "{e}"
        );
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused() {
        let (_d, f, uid) = setup();
        // As root, give the file away; otherwise pretend to be another uid.
        let (owner, runner) = match std::os::unix::fs::chown(&f, Some(65534), None) {
            Ok(()) => (65534, uid),
            Err(_) => (uid, uid + 1),
        };
        let e = check_as(&f, runner).expect_err("foreign owner");
        assert!(
            e.starts_with(&format!("the file is owned by uid {owner}")),
            "{e}"
        );
    }

    #[test]
    fn a_writable_watched_directory_is_refused_even_when_sticky() {
        let (d, f, uid) = setup();
        chmod(d.path(), 0o1777);
        let e = check_as(&f, uid).expect_err("sticky watched dir");
        assert!(
            e.starts_with("the directory it is in (watched for reloads), "),
            "{e}"
        );
        assert!(e.contains("is world-writable (mode 1777)"), "{e}");
    }

    #[test]
    fn a_symlink_into_a_world_writable_directory_is_refused() {
        let (d, f, uid) = setup();
        let open = d.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        chmod(&open, 0o777);
        let target = open.join("real.yaml");
        std::fs::rename(&f, &target).expect("move");
        symlink(&target, &f).expect("symlink");
        let e = check_as(&f, uid).expect_err("symlink into 0777");
        assert!(
            e.contains(&format!("{}, is world-writable", open.display())),
            "{e}"
        );
        // The same target in a private directory is fine: the link is only
        // a name.
        chmod(&open, 0o755);
        assert_eq!(check_as(&f, uid), Ok(()));
    }

    #[test]
    fn a_writable_directory_higher_up_is_refused_unless_sticky_protects_the_entry() {
        let (d, _, uid) = setup();
        let mid = d.path().join("mid");
        let leaf = mid.join("leaf");
        std::fs::create_dir_all(&leaf).expect("mkdir");
        chmod(&leaf, 0o755);
        let f = leaf.join("tapio.yaml");
        std::fs::write(&f, "").expect("write");
        chmod(&f, 0o600);
        chmod(&mid, 0o777);
        let e = check_as(&f, uid).expect_err("writable ancestor");
        assert!(e.starts_with("a directory on its path, "), "{e}");
        // Sticky and root-owned (as /tmp): others cannot rename `leaf`.
        chmod(&mid, 0o1777);
        let sticky_ok = check_as(&f, uid);
        if uid_of(&mid) == 0 {
            assert_eq!(sticky_ok, Ok(()));
        } else {
            // A sticky directory owned by a user is that user's to change.
            assert!(sticky_ok.is_err());
        }
    }

    #[test]
    fn a_configmap_layout_of_root_owned_symlinks_is_trusted() {
        // kubelet: tapio.yaml -> ..data/tapio.yaml, ..data -> ..2026_x.
        let (d, _, uid) = setup();
        let ts = d.path().join("..2026_12_05");
        std::fs::create_dir(&ts).expect("mkdir");
        chmod(&ts, 0o755);
        std::fs::write(ts.join("cm.yaml"), "").expect("write");
        chmod(&ts.join("cm.yaml"), 0o644);
        symlink("..2026_12_05", d.path().join("..data")).expect("link");
        let f = d.path().join("cm.yaml");
        symlink("..data/cm.yaml", &f).expect("link");
        assert_eq!(check_as(&f, uid), Ok(()));
    }

    #[test]
    fn a_missing_file_or_a_directory_is_refused() {
        let (d, _, uid) = setup();
        assert!(check_as(&d.path().join("none.yaml"), uid)
            .expect_err("missing")
            .starts_with("cannot read it: "));
        assert_eq!(
            check_as(d.path(), uid),
            Err("is not a regular file".to_string())
        );
    }
}
