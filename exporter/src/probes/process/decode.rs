//! Process records as the kernel writes them (`shared/include/tapio/events.h`),
//! read without allocating: the record is copied out of the ring buffer
//! (checked length, unaligned read) and its text is borrowed from the copy.

use crate::otel::wire::Lossy;
use std::fmt;
use tapio_shared::{
    read_record, record_kind, tapio_event_header, tapio_event_kind as kind,
    tapio_exec_flags as flags, tapio_process_exec, tapio_process_exit, tapio_process_fork,
};

pub use crate::probes::DecodeError;

/// One process record.
#[derive(Clone)]
pub enum Record<'a> {
    Exec(Exec<'a>),
    Exit(tapio_process_exit),
    Fork(tapio_process_fork),
}

/// An exec record: its fixed fields copied out, its text (1.5 KiB of
/// paths, arguments and cgroup names, most of the record) borrowed from
/// the ring-buffer bytes rather than copied.
#[derive(Clone)]
pub struct Exec<'a> {
    pub hdr: tapio_event_header,
    /// CLOCK_BOOTTIME ns the process started.
    pub start_ns: u64,
    pub flags: u32,
    pub filename_len: u16,
    pub args_len: u16,
    /// The whole record (at least `size_of::<tapio_process_exec>()`).
    bytes: &'a [u8],
}

impl<'a> Exec<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        use core::mem::{offset_of, size_of};
        let want = size_of::<tapio_process_exec>();
        if bytes.len() < want {
            return Err(DecodeError::Short(tapio_shared::ShortRecord {
                want,
                got: bytes.len(),
            }));
        }
        let at = |off: usize, n: usize| &bytes[off..off + n];
        let u16_at = |off| u16::from_ne_bytes([bytes[off], bytes[off + 1]]);
        let mut u32b = [0u8; 4];
        u32b.copy_from_slice(at(offset_of!(tapio_process_exec, flags), 4));
        let mut u64b = [0u8; 8];
        u64b.copy_from_slice(at(offset_of!(tapio_process_exec, start_ns), 8));
        Ok(Self {
            hdr: read_record(bytes)?,
            start_ns: u64::from_ne_bytes(u64b),
            flags: u32::from_ne_bytes(u32b),
            filename_len: u16_at(offset_of!(tapio_process_exec, filename_len)),
            args_len: u16_at(offset_of!(tapio_process_exec, args_len)),
            bytes: &bytes[..want],
        })
    }

    /// The char array field at `off` of `len` bytes.
    fn chars(&self, off: usize, len: usize) -> &'a [u8] {
        &self.bytes[off..off + len]
    }
}

/// Bytes up to `len` or the first NUL.
fn until_nul(b: &[u8], len: usize) -> &[u8] {
    let b = &b[..len.min(b.len())];
    b.iter().position(|c| *c == 0).map_or(b, |n| &b[..n])
}

impl Record<'_> {
    pub fn header(&self) -> &tapio_event_header {
        match self {
            Record::Exec(r) => &r.hdr,
            Record::Exit(r) => &r.hdr,
            Record::Fork(r) => &r.hdr,
        }
    }
}

/// Decode one ring-buffer record of the process probe.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_PROCESS_EXEC as u32 {
        Ok(Record::Exec(Exec::parse(bytes)?))
    } else if k == kind::TAPIO_EVENT_PROCESS_EXIT as u32 {
        Ok(Record::Exit(read_record(bytes)?))
    } else if k == kind::TAPIO_EVENT_PROCESS_FORK as u32 {
        Ok(Record::Fork(read_record(bytes)?))
    } else {
        Err(DecodeError::UnknownKind(k))
    }
}

/// Text of a C char array: up to `len` bytes or the first NUL.
pub fn text(chars: &[core::ffi::c_char], len: usize) -> &[u8] {
    let n = len.min(chars.len());
    // SAFETY: c_char and u8 have the same size and alignment, and every
    // bit pattern is a valid u8.
    let b = unsafe { core::slice::from_raw_parts(chars.as_ptr().cast::<u8>(), n) };
    until_nul(b, n)
}

/// The task's comm.
pub fn comm(h: &tapio_event_header) -> &[u8] {
    text(&h.comm, h.comm.len())
}

/// Accessors of an exec record.
pub trait ExecExt {
    fn filename(&self) -> &[u8];
    /// argv as the kernel copied it: NUL-separated, the last maybe cut.
    fn args(&self) -> &[u8];
    fn cgroup_leaf(&self) -> &[u8];
    fn cgroup_parent(&self) -> &[u8];
    /// The path or the arguments were longer than the kernel captured.
    fn truncated(&self) -> bool;
}

macro_rules! field {
    ($name:ident, $len:expr) => {
        (
            core::mem::offset_of!(tapio_process_exec, $name),
            $len as usize,
        )
    };
}

impl ExecExt for Exec<'_> {
    fn filename(&self) -> &[u8] {
        let (off, n) = field!(filename, tapio_shared::TAPIO_PATH_LEN);
        until_nul(self.chars(off, n), usize::from(self.filename_len))
    }
    fn args(&self) -> &[u8] {
        let (off, n) = field!(args, tapio_shared::TAPIO_ARGS_LEN);
        let b = self.chars(off, n);
        &b[..usize::from(self.args_len).min(n)]
    }
    fn cgroup_leaf(&self) -> &[u8] {
        let (off, n) = field!(cgroup_leaf, tapio_shared::TAPIO_CGROUP_NAME_LEN);
        until_nul(self.chars(off, n), n)
    }
    fn cgroup_parent(&self) -> &[u8] {
        let (off, n) = field!(cgroup_parent, tapio_shared::TAPIO_CGROUP_NAME_LEN);
        until_nul(self.chars(off, n), n)
    }
    fn truncated(&self) -> bool {
        self.flags & (flags::TAPIO_EXEC_FILENAME_TRUNCATED | flags::TAPIO_EXEC_ARGS_TRUNCATED) != 0
    }
}

/// The command line the way `ps` shows it: the arguments joined by spaces
/// (empty ones skipped), replacement characters for what is not UTF-8.
pub struct CommandLine<'a>(pub &'a [u8]);

impl CommandLine<'_> {
    /// Append the command line to `out` (the formatter only for text that
    /// is not UTF-8).
    pub fn write_to(&self, out: &mut String) {
        let mut first = true;
        for a in self.0.split(|b| *b == 0).filter(|a| !a.is_empty()) {
            if !first {
                out.push(' ');
            }
            first = false;
            match std::str::from_utf8(a) {
                Ok(s) => out.push_str(s),
                Err(_) => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{}", Lossy(a));
                }
            }
        }
    }
}

impl fmt::Display for CommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for a in self.0.split(|b| *b == 0).filter(|a| !a.is_empty()) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            fmt::Display::fmt(&Lossy(a), f)?;
        }
        Ok(())
    }
}

/// Fields every process record has, owned (the probes still building
/// opentelemetry-proto messages use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// CLOCK_BOOTTIME ns.
    pub ts_boot_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
}

impl From<&tapio_event_header> for Common {
    fn from(h: &tapio_event_header) -> Self {
        Self {
            ts_boot_ns: h.ts_ns,
            cgroup_id: h.cgroup_id,
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            gid: h.gid,
            comm: crate::probes::cstr(&h.comm, h.comm.len()),
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Records as the kernel writes them, built through the generated types.
    use super::*;
    use tapio_shared::as_bytes;

    pub fn fill(dst: &mut [core::ffi::c_char], s: &[u8]) {
        for (d, b) in dst.iter_mut().zip(s) {
            *d = *b as core::ffi::c_char;
        }
    }

    pub fn header(k: kind) -> tapio_event_header {
        let mut h = tapio_event_header {
            ts_ns: 5_000_000_000,
            cgroup_id: 77,
            kind: k as u32,
            pid: 1234,
            tid: 1234,
            ppid: 1,
            uid: 0,
            gid: 0,
            ..Default::default()
        };
        fill(&mut h.comm, b"sh\0");
        h
    }

    pub fn exec_bytes(args: &[u8], flags: u32) -> Vec<u8> {
        let mut r = tapio_process_exec {
            hdr: header(kind::TAPIO_EVENT_PROCESS_EXEC),
            start_ns: 4_000_000_000,
            flags,
            old_pid: 1234,
            filename_len: 7,
            args_len: args.len() as u16,
            ..Default::default()
        };
        fill(&mut r.filename, b"/bin/sh\0garbage-after-len");
        fill(&mut r.args, args);
        fill(
            &mut r.cgroup_leaf,
            format!("docker-{}.scope\0", "b".repeat(64)).as_bytes(),
        );
        fill(&mut r.cgroup_parent, b"system.slice\0");
        as_bytes(&r).to_vec()
    }

    pub fn exit_bytes(code: i32, signal: u32) -> Vec<u8> {
        let r = tapio_process_exit {
            hdr: header(kind::TAPIO_EVENT_PROCESS_EXIT),
            start_ns: 4_000_000_000,
            exit_code: code,
            exit_signal: signal,
            ..Default::default()
        };
        as_bytes(&r).to_vec()
    }

    pub fn fork_bytes() -> Vec<u8> {
        let r = tapio_process_fork {
            hdr: header(kind::TAPIO_EVENT_PROCESS_FORK),
            child_pid: 1300,
            child_start_ns: 5_000_000_000,
            ..Default::default()
        };
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn decodes_exec_with_args_and_cgroup() {
        let bytes = exec_bytes(b"/bin/sh\0-c\0exit 7\0", flags::TAPIO_EXEC_ARGS_TRUNCATED);
        let Record::Exec(e) = decode(&bytes).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(e.filename(), b"/bin/sh");
        assert_eq!(CommandLine(e.args()).to_string(), "/bin/sh -c exit 7");
        assert!(e.truncated());
        assert_eq!(e.hdr.pid, 1234);
        assert_eq!(comm(&e.hdr), b"sh");
        assert_eq!(e.cgroup_parent(), b"system.slice");
        assert!(e.cgroup_leaf().starts_with(b"docker-"));
    }

    #[test]
    fn args_len_bounds_what_is_read() {
        // Bytes past args_len are ring-buffer garbage and must not show.
        let mut bytes = exec_bytes(b"ls\0-l\0", 0);
        let off = core::mem::offset_of!(tapio_process_exec, args_len);
        bytes[off..off + 2].copy_from_slice(&3u16.to_ne_bytes());
        let Record::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(CommandLine(e.args()).to_string(), "ls");
    }

    #[test]
    fn command_line_skips_empty_args_and_replaces_bad_utf8() {
        for (raw, want) in [
            (&b"a\0\0b\xff\0"[..], "a b\u{fffd}"),
            (b"", ""),
            (b"\0\0x", "x"),
            (b"ls\0-l\0", "ls -l"),
        ] {
            assert_eq!(CommandLine(raw).to_string(), want);
            let mut s = String::new();
            CommandLine(raw).write_to(&mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn decodes_exit_and_fork() {
        let Record::Exit(x) = decode(&exit_bytes(7, 0)).unwrap() else {
            panic!()
        };
        assert_eq!((x.exit_code, x.exit_signal, x.core_dumped), (7, 0, 0));
        let Record::Fork(f) = decode(&fork_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(f.child_pid, 1300);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short(_))));
        let mut bytes = exit_bytes(0, 0);
        bytes[16..20].copy_from_slice(&99u32.to_ne_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::UnknownKind(99))));
        // An exec kind with an exit-sized body is short, not misread.
        let mut short = exit_bytes(0, 0);
        short[16..20].copy_from_slice(&1u32.to_ne_bytes());
        assert!(matches!(decode(&short), Err(DecodeError::Short(_))));
        for n in 0..200 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = decode(&junk);
        }
    }
}
