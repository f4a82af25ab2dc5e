//! Container id and Kubernetes pod UID from cgroup directory names.
//!
//! Runtimes name the container's cgroup after its id and the pod's after its
//! UID. The layouts recognised (systemd and cgroupfs drivers):
//!   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//!   kubepods/burstable/pod<uid>/<id>
//!   system.slice/docker-<id>.scope, machine.slice/libpod-<id>.scope, crio-<id>.scope
//!
//! Outside containers, systemd names each service's cgroup after its unit
//! (`system.slice/nginx.service`, `user@1000.service/app.slice/foo.service`,
//! `session-3.scope`), so the leaf is the unit that owns the task.

/// What a cgroup says about its workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// The systemd unit (`*.service` or `*.scope`) of a task outside a
    /// container.
    pub systemd_unit: Option<String>,
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in a leaf cgroup name, if it has one.
pub fn container_id(leaf: &str) -> Option<String> {
    let name = leaf.strip_suffix(".scope").unwrap_or(leaf);
    // conmon is the runtime's monitor process, not the container.
    if name.contains("conmon") {
        return None;
    }
    let id = name.rsplit(['-', ':']).next().unwrap_or(name);
    is_hex_id(id).then(|| id.to_ascii_lowercase())
}

/// The pod UID in a cgroup name (`pod<uid>` or `kubepods-*-pod<uid>.slice`).
pub fn pod_uid(name: &str) -> Option<String> {
    let name = name.strip_suffix(".slice").unwrap_or(name);
    let at = name.rfind("pod")?;
    let uid = name[at + 3..].replace('_', "-");
    let parts: Vec<&str> = uid.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let ok = parts.len() == 5
        && parts
            .iter()
            .zip(shape)
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| uid.to_ascii_lowercase())
}

/// The systemd unit a leaf cgroup name is, if it is one.
pub fn systemd_unit(leaf: &str) -> Option<String> {
    let stem = leaf
        .strip_suffix(".service")
        .or_else(|| leaf.strip_suffix(".scope"))?;
    // systemd's unit-name alphabet; anything else is some other cgroup.
    let ok = !stem.is_empty()
        && leaf.len() <= 255
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@\\".contains(&b));
    ok.then(|| leaf.to_string())
}

/// Workload of a task from its cgroup's leaf and parent directory names.
pub fn from_names(leaf: &str, parent: &str) -> Workload {
    let container_id = container_id(leaf);
    // A pod's own cgroup (pause-less runtimes put processes there) or the
    // container's parent.
    let pod_uid = pod_uid(leaf).or_else(|| container_id.as_ref().and_then(|_| pod_uid(parent)));
    // A container's scope is a unit too, but the container id says more.
    let systemd_unit = match (&container_id, &pod_uid) {
        (None, None) => systemd_unit(leaf),
        _ => None,
    };
    Workload {
        container_id,
        pod_uid,
        systemd_unit,
    }
}

/// Workload from a full cgroup path (`/proc/<pid>/cgroup`'s v2 line).
pub fn from_path(path: &str) -> Workload {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let leaf = parts.next().unwrap_or("");
    let parent = parts.next().unwrap_or("");
    from_names(leaf, parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b9c1d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff0";

    #[test]
    fn systemd_driver_containerd() {
        let w = from_names(
            &format!("cri-containerd-{ID}.scope"),
            "kubepods-burstable-pod1a2b3c4d_5e6f_7081_9203_a4b5c6d7e8f9.slice",
        );
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(
            w.pod_uid.as_deref(),
            Some("1a2b3c4d-5e6f-7081-9203-a4b5c6d7e8f9")
        );
    }

    #[test]
    fn cgroupfs_driver() {
        let w = from_path(&format!(
            "/kubepods/besteffort/pod1a2b3c4d-5e6f-7081-9203-a4b5c6d7e8f9/{ID}"
        ));
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(
            w.pod_uid.as_deref(),
            Some("1a2b3c4d-5e6f-7081-9203-a4b5c6d7e8f9")
        );
    }

    #[test]
    fn docker_podman_crio() {
        for leaf in [
            format!("docker-{ID}.scope"),
            format!("libpod-{ID}.scope"),
            format!("crio-{ID}.scope"),
        ] {
            let w = from_names(&leaf, "system.slice");
            assert_eq!(w.container_id.as_deref(), Some(ID), "{leaf}");
            assert_eq!(w.pod_uid, None);
        }
    }

    #[test]
    fn systemd_units_outside_containers() {
        for (leaf, parent) in [
            ("nginx.service", "system.slice"),
            ("session-3.scope", "user-0.slice"),
            ("foo@inst.service", "app.slice"),
            ("run-u12.scope", "system.slice"),
            ("systemd-journald.service", "system.slice"),
        ] {
            let w = from_names(leaf, parent);
            assert_eq!(w.systemd_unit.as_deref(), Some(leaf), "{leaf}");
            assert_eq!((w.container_id, w.pod_uid), (None, None), "{leaf}");
        }
        // Containers' scopes are containers, not units.
        let w = from_names(&format!("docker-{ID}.scope"), "system.slice");
        assert_eq!(w.systemd_unit, None);
        for leaf in [
            ".service",
            "a b.service",
            "system.slice",
            "nginx.socket",
            "x.service/",
        ] {
            assert_eq!(systemd_unit(leaf), None, "{leaf}");
        }
    }

    #[test]
    fn plain_hosts_have_no_workload() {
        assert_eq!(from_names("", ""), Workload::default());
        assert_eq!(from_names("tapio-test", "user.slice"), Workload::default());
        assert_eq!(
            from_names(&format!("crio-conmon-{ID}.scope"), "x").container_id,
            None
        );
        assert_eq!(from_path("/"), Workload::default());
        // A 64-char non-hex name is not an id.
        assert_eq!(container_id(&"z".repeat(64)), None);
    }
}
