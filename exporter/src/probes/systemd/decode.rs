//! systemd unit records as the kernel writes them
//! (`struct tapio_unit_event` in `shared/include/tapio/events.h`), checked
//! and copied out of the ring buffer; the path is borrowed from the copy.

use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_unit_event,
    tapio_unit_flags as flags, tapio_unit_op as op,
};

pub use crate::probes::DecodeError;

/// What happened to a unit's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// mkdir: the cgroup appeared, no process yet.
    Created,
    /// The first process entered it.
    Started,
    /// rmdir: the unit is gone.
    Removed,
}

/// One unit record.
#[derive(Clone)]
pub struct UnitRecord {
    pub op: Op,
    pub raw: tapio_unit_event,
}

impl UnitRecord {
    /// The cgroup path from the v2 root (`/system.slice/foo.service`);
    /// empty when the hook had none (a fork into the cgroup).
    pub fn path(&self) -> &[u8] {
        let n = usize::from(self.raw.path_len).min(self.raw.path.len());
        super::super::process::decode::text(&self.raw.path, n)
    }

    /// The path was longer than the kernel copies.
    pub fn path_cut(&self) -> bool {
        self.raw.flags & flags::TAPIO_UNIT_PATH_CUT != 0
    }

    /// The unit existed before Tapio started.
    pub fn preexisting(&self) -> bool {
        (self.raw.flags | self.raw.state.flags) & flags::TAPIO_UNIT_PREEXISTING != 0
    }

    /// The first process was forked straight into the cgroup.
    pub fn forked_in(&self) -> bool {
        (self.raw.flags | self.raw.state.flags) & flags::TAPIO_UNIT_FORKED_IN != 0
    }
}

/// Decode one ring-buffer record of the systemd probe.
pub fn decode(bytes: &[u8]) -> Result<UnitRecord, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_UNIT as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let raw: tapio_unit_event = read_record(bytes)?;
    let op = match raw.op {
        op::TAPIO_UNIT_CREATED => Op::Created,
        op::TAPIO_UNIT_STARTED => Op::Started,
        op::TAPIO_UNIT_REMOVED => Op::Removed,
        // A record of a newer kernel object than this decoder.
        other => return Err(DecodeError::UnknownKind(k << 8 | other)),
    };
    Ok(UnitRecord { op, raw })
}

/// A unit's place in the hierarchy, from its cgroup path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPath<'a> {
    /// The top-level slice (first path component).
    pub top: &'a str,
    /// The slice directly above the unit (its parent directory).
    pub slice: &'a str,
    /// The unit's name (the last component).
    pub unit: &'a str,
}

/// Split `/a.slice/.../b.service`; `None` when it is not a unit path (a
/// unit sits below at least one slice and is named `*.service`/`*.scope`).
pub fn unit_path(path: &str) -> Option<UnitPath<'_>> {
    let mut parts = path.trim_start_matches('/').split('/');
    let top = parts.next()?;
    let mut comps: Vec<&str> = Vec::with_capacity(8);
    comps.push(top);
    comps.extend(parts);
    if comps.len() < 2 || comps.iter().any(|c| c.is_empty()) {
        return None;
    }
    let unit = comps[comps.len() - 1];
    crate::enrich::cgroup::systemd_unit(unit)?;
    Some(UnitPath {
        top,
        slice: comps[comps.len() - 2],
        unit,
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::probes::process::fixtures::{fill, header};
    use tapio_shared::as_bytes;

    pub fn unit_bytes(o: u32, path: &str, f: impl FnOnce(&mut tapio_unit_event)) -> Vec<u8> {
        let mut r = tapio_unit_event {
            hdr: header(kind::TAPIO_EVENT_UNIT),
            unit_cgroup_id: 4242,
            op: o,
            path_len: path.len() as u16,
            level: path.matches('/').count() as u16,
            ..Default::default()
        };
        fill(&mut r.path, path.as_bytes());
        f(&mut r);
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::unit_bytes, *};

    #[test]
    fn decodes_each_op_with_its_path() {
        for (o, want) in [
            (op::TAPIO_UNIT_CREATED, Op::Created),
            (op::TAPIO_UNIT_STARTED, Op::Started),
            (op::TAPIO_UNIT_REMOVED, Op::Removed),
        ] {
            let b = unit_bytes(o, "/system.slice/nginx.service", |r| {
                r.state.first_pid = 77;
            });
            let r = decode(&b).unwrap();
            assert_eq!(r.op, want);
            assert_eq!(r.path(), b"/system.slice/nginx.service");
            assert_eq!(r.raw.state.first_pid, 77);
            assert!(!r.preexisting() && !r.path_cut() && !r.forked_in());
        }
    }

    #[test]
    fn path_len_bounds_what_is_read() {
        let b = unit_bytes(op::TAPIO_UNIT_REMOVED, "/a.slice/b.service", |r| {
            r.path_len = 8;
        });
        assert_eq!(decode(&b).unwrap().path(), b"/a.slice");
    }

    #[test]
    fn bad_records_are_errors() {
        let b = unit_bytes(9, "/a.slice/b.service", |_| {});
        assert!(matches!(decode(&b), Err(DecodeError::UnknownKind(_))));
        assert!(matches!(decode(&b[..100]), Err(DecodeError::Short(_))));
        let exit = crate::probes::process::fixtures::exit_bytes(0, 0);
        assert!(matches!(decode(&exit), Err(DecodeError::UnknownKind(2))));
    }

    #[test]
    fn unit_paths() {
        let p = unit_path("/system.slice/nginx.service").unwrap();
        assert_eq!(
            (p.top, p.slice, p.unit),
            ("system.slice", "system.slice", "nginx.service")
        );
        let p =
            unit_path("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.scope").unwrap();
        assert_eq!(
            (p.top, p.slice, p.unit),
            ("user.slice", "app.slice", "foo.scope")
        );
        assert_eq!(unit_path("/nginx.service"), None);
        assert_eq!(unit_path("/system.slice/not-a-unit"), None);
        assert_eq!(unit_path("/system.slice//x.service"), None);
        assert_eq!(unit_path(""), None);
    }
}
