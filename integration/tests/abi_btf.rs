//! The generated Rust wire types agree with the compiled BPF object's BTF:
//! same size, same members, same offsets. (bindgen's layout tests already
//! hold them to the C compiler; this holds them to what the kernel gets.)

use std::{collections::HashMap, process::Command};
use tapio_shared::*;

/// struct name → (size, [(member, bit offset)]) from `bpftool btf dump`.
fn btf_structs(object: &[u8]) -> HashMap<String, (usize, Vec<(String, usize)>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.bpf.o");
    std::fs::write(&path, object).unwrap();
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(&path)
        .args(["format", "raw"])
        .output()
        .expect("bpftool (apt-get install bpftool) is needed for this test");
    assert!(
        out.status.success(),
        "bpftool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut structs = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('[') {
            current = None;
            if let Some(rest) = line.split_once("] STRUCT '").map(|x| x.1) {
                let (name, tail) = rest.split_once('\'').unwrap();
                let size: usize = tail
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("size="))
                    .unwrap()
                    .parse()
                    .unwrap();
                structs.insert(name.to_string(), (size, Vec::new()));
                current = Some(name.to_string());
            }
        } else if let Some(name) = &current {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix('\'') {
                let (member, tail) = rest.split_once('\'').unwrap();
                let bits: usize = tail
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("bits_offset="))
                    .unwrap()
                    .parse()
                    .unwrap();
                structs
                    .get_mut(name)
                    .unwrap()
                    .1
                    .push((member.to_string(), bits));
            }
        }
    }
    structs
}

macro_rules! check_struct {
    ($btf:expr, $t:ident { $($f:ident),* $(,)? }) => {{
        let name = stringify!($t);
        let (size, members) = $btf.get(name).unwrap_or_else(|| panic!("{name} missing from the object's BTF"));
        assert_eq!(*size, core::mem::size_of::<$t>(), "{name}: size");
        let rust: Vec<(&str, usize)> = vec![$((stringify!($f), core::mem::offset_of!($t, $f) * 8)),*];
        let btf: Vec<(&str, usize)> = members
            .iter()
            .filter(|(m, _)| !m.starts_with("_pad"))
            .map(|(m, b)| (m.as_str(), *b))
            .collect();
        assert_eq!(rust, btf, "{name}: members and offsets (bits)");
    }};
}

#[test]
fn process_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::PROCESS);
    check_struct!(
        btf,
        tapio_event_header {
            ts_ns,
            cgroup_id,
            kind,
            pid,
            tid,
            ppid,
            uid,
            gid,
            comm
        }
    );
    check_struct!(
        btf,
        tapio_process_exec {
            hdr,
            start_ns,
            flags,
            old_pid,
            filename_len,
            args_len,
            cgroup_leaf,
            cgroup_parent,
            filename,
            args
        }
    );
    check_struct!(
        btf,
        tapio_process_exit {
            hdr,
            start_ns,
            exit_code,
            exit_signal,
            core_dumped
        }
    );
    check_struct!(
        btf,
        tapio_process_fork {
            hdr,
            child_start_ns,
            child_pid
        }
    );
}

#[test]
fn network_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::NETWORK);
    check_struct!(
        btf,
        tapio_tcp_tuple {
            saddr,
            daddr,
            sport,
            dport,
            family
        }
    );
    check_struct!(
        btf,
        tapio_tcp_connect {
            hdr,
            start_ns,
            end_ns,
            sock_cookie,
            outcome,
            error,
            tuple
        }
    );
    check_struct!(
        btf,
        tapio_tcp_close {
            hdr,
            established_ns,
            bytes_sent,
            bytes_received,
            sock_cookie,
            inbound,
            srtt_us,
            tuple
        }
    );
    check_struct!(btf, tapio_hist { buckets, sum_ns });
}

#[test]
fn dns_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::DNS);
    check_struct!(
        btf,
        tapio_dns_packet {
            hdr,
            payload_len,
            wire_len,
            direction,
            protocol,
            flags,
            tuple,
            payload
        }
    );
    check_struct!(
        btf,
        tapio_dns_encrypted {
            hdr,
            tuple,
            encryption
        }
    );
}

#[test]
fn xdp_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::XDP);
    check_struct!(
        btf,
        tapio_xdp_block {
            hdr,
            until_ns,
            ifindex,
            reason,
            addr
        }
    );
    check_struct!(
        btf,
        tapio_xdp_policy {
            rate_interval_ns,
            rate_tolerance_ns,
            syn_src_interval_ns,
            syn_src_tolerance_ns,
            syn_dst_interval_ns,
            syn_dst_tolerance_ns,
            block_ns,
            dns_window_ns,
            dns_max_size,
            flags
        }
    );
    check_struct!(btf, tapio_xdp_counter { packets, bytes });
    check_struct!(
        btf,
        tapio_xdp_block_state {
            since_ns,
            until_ns,
            dropped,
            ifindex
        }
    );
}

#[test]
fn security_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::SECURITY);
    check_struct!(
        btf,
        tapio_ids {
            uid,
            euid,
            suid,
            fsuid,
            gid,
            egid,
            sgid,
            fsgid
        }
    );
    check_struct!(
        btf,
        tapio_sec_cred {
            hdr,
            old_cap_eff,
            new_cap_eff,
            old_cap_prm,
            new_cap_prm,
            old_ids,
            new_ids,
            syscall_nr,
            source
        }
    );
    check_struct!(
        btf,
        tapio_sec_event {
            hdr,
            arg0,
            arg1,
            arg2,
            arg3,
            ino,
            ret,
            op,
            syscall_nr,
            target_pid,
            dev,
            watch,
            flags,
            name_len,
            name
        }
    );
}

#[test]
fn lsm_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::LSM);
    check_struct!(
        btf,
        tapio_lsm_rule {
            cgroup_id,
            cgroup_level,
            uid,
            action,
            hook,
            next,
            flags,
            access,
            container,
            comm
        }
    );
    check_struct!(
        btf,
        tapio_lsm_decision {
            hdr,
            ino,
            rule,
            generation,
            hook,
            action,
            dev,
            port,
            family,
            proto,
            major,
            minor,
            access,
            target_pid,
            addr
        }
    );
}

#[test]
fn tc_records_and_maps_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::TC);
    check_struct!(
        btf,
        tapio_tc_flow {
            hdr,
            tuple,
            ifindex,
            sni_len,
            proto,
            l4proto,
            flags,
            sni
        }
    );
    check_struct!(
        btf,
        tapio_tc_key {
            ifindex,
            server_port,
            proto,
            direction
        }
    );
    check_struct!(btf, tapio_tc_count { packets, bytes });
    check_struct!(
        btf,
        tapio_tc_addr {
            addr,
            port,
            proto,
            generation
        }
    );
    check_struct!(btf, tapio_tc_backend { addr, port, weight });
    check_struct!(
        btf,
        tapio_tc_service {
            n_backends,
            total_weight,
            backends
        }
    );
    check_struct!(
        btf,
        tapio_tc_backend_stats {
            connections,
            failures,
            successes
        }
    );
    check_struct!(
        btf,
        tapio_tc_chaos {
            expires_ns,
            delay_ns,
            loss_threshold,
            port,
            proto,
            direction
        }
    );
    check_struct!(
        btf,
        tapio_tc_cfg {
            n_chaos,
            chaos_off,
            max_failures
        }
    );
}

#[test]
fn kernel_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::KERNEL);
    check_struct!(
        btf,
        tapio_oom_kill {
            hdr,
            total_vm_bytes,
            anon_rss_bytes,
            file_rss_bytes,
            shmem_rss_bytes,
            swap_bytes,
            pgtables_bytes,
            trigger_pid,
            trigger_tid,
            flags,
            source,
            oom_score_adj,
            trigger_comm,
            cgroup_leaf,
            cgroup_parent
        }
    );
    assert_eq!(core::mem::size_of::<tapio_oom_kill>(), 400);
    check_struct!(
        btf,
        tapio_io_uring_create {
            hdr,
            fd,
            sq_entries,
            cq_entries,
            flags
        }
    );
}

#[test]
fn systemd_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::SYSTEMD);
    check_struct!(
        btf,
        tapio_unit_state {
            created_ns,
            first_ns,
            first_pid,
            exits,
            failed_exits,
            oom_kills,
            last_failed_pid,
            last_exit_code,
            last_exit_signal,
            flags
        }
    );
    check_struct!(
        btf,
        tapio_unit_event {
            hdr,
            state,
            unit_cgroup_id,
            op,
            flags,
            path_len,
            level,
            path
        }
    );
    assert_eq!(core::mem::size_of::<tapio_unit_event>(), 384);
}

#[test]
fn netns_records_match_the_object_btf() {
    let btf = btf_structs(tapio::bpf_objects::NETNS);
    check_struct!(
        btf,
        tapio_netns_create {
            hdr,
            netns_ino,
            parent_netns_ino,
            via,
            child_pid
        }
    );
    check_struct!(
        btf,
        tapio_cni_exec {
            hdr,
            netns_ino,
            flags,
            env_len,
            env_total,
            filename_len,
            filename,
            env
        }
    );
    assert_eq!(core::mem::size_of::<tapio_netns_create>(), 80);
    assert_eq!(core::mem::size_of::<tapio_cni_exec>(), 8528);
}
