//! What the kernel counts per loaded program that aya 0.14 does not expose:
//! `recursion_misses`, the runs it skipped because the same program was
//! already running on that CPU (a tracepoint hit by a softirq that
//! interrupted the program). Each skipped run may have been an event, so a
//! probe reports them as `tapio.events.lost{reason="recursion"}`.
//!
//! Hand-written because aya's `ProgramInfo` keeps the kernel struct
//! private and has no accessor for this field; the layouts come from
//! aya-obj's generated kernel bindings, not from here.

use aya_obj::generated::{bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, bpf_prog_info};
use std::os::fd::{AsRawFd, BorrowedFd};

/// The `info` member of `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD; the
/// kernel zero-fills the rest of the union when given a shorter attr.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `recursion_misses` of the program behind `fd` (0 before kernel 5.12,
/// which did not count them), or `None` if the kernel refused the query.
pub fn recursion_misses(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: bpf_prog_info is a plain C struct of integers; all-zero is
    // valid and is what the kernel expects of the bytes it does not fill.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<bpf_prog_info>() as u32,
        info: std::ptr::addr_of_mut!(info) as u64,
    };
    // SAFETY: attr points at a live, correctly sized struct and `info` at a
    // buffer of `info_len` bytes that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::addr_of_mut!(attr),
            std::mem::size_of::<InfoByFd>(),
        )
    };
    (r == 0).then_some(info.recursion_misses)
}

/// Suffix of a program that does the runs the kernel skips of its
/// namesake (`ebpf/network.bpf.c`): its own misses lose nothing, its
/// namesake's are lost less the runs it did.
pub const NESTED_SUFFIX: &str = "_nested";

/// Programs that act only on what a task does in process context, on a
/// tracepoint that also fires in softirq: the kernel skips a run only when
/// it nests in the program's own run on that CPU, i.e. comes from an
/// interrupt, so a skipped run is never one they act on.
/// `tapio_dns_tcp_connect_btf` (inet_sock_set_state) learns a DNS-over-TCP
/// socket's owner at SYN_SENT, which only connect() makes; the softirq
/// transitions that nest in it (a loopback peer's handshake) were counted
/// as lost: 6-18 records per 20 s of the sustained-load bench that all
/// arrived.
pub const PROCESS_CONTEXT_ONLY: &[&str] = &["tapio_dns_tcp_connect_btf"];

/// Whether the runs the kernel skipped of the program `name` may have been
/// events: not for a `_nested` twin (a run skipped because the twin was
/// busy is one its namesake did, or, when both were skipped, one already
/// in the namesake's misses) nor for the [`PROCESS_CONTEXT_ONLY`]
/// programs.
pub fn misses_may_be_events(name: &str) -> bool {
    !name.ends_with(NESTED_SUFFIX) && !PROCESS_CONTEXT_ONLY.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_programs_whose_skipped_runs_may_be_events_count() {
        assert!(misses_may_be_events("tapio_tcp_state_btf"));
        assert!(misses_may_be_events("tapio_dns_receive_btf"));
        assert!(!misses_may_be_events("tapio_tcp_state_btf_nested"));
        assert!(!misses_may_be_events("tapio_dns_tcp_connect_btf"));
        // Every name listed is a program of the dns probe's spec: a rename
        // there must not leave its misses counted again.
        let dns: Vec<&str> = crate::probes::dns::SPEC
            .variants
            .iter()
            .flat_map(|v| v.programs.iter().map(|(n, _)| *n))
            .collect();
        for name in PROCESS_CONTEXT_ONLY {
            assert!(dns.contains(name), "{name} is no dns program");
        }
    }

    #[test]
    fn an_fd_that_is_no_program_is_refused() {
        let f = std::fs::File::open("/proc/self/stat").expect("open");
        use std::os::fd::AsFd;
        assert_eq!(recursion_misses(f.as_fd()), None);
    }
}
