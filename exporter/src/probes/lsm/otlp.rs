//! lsm decisions → `security.policy_decision` log records, written with the
//! direct writers (protobuf or OTLP/JSON from the same calls). The one
//! place these records' names and shapes are decided.

use super::{file_op_name, Decision};
use crate::clock::WallClock;
use crate::enrich::Context;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, Lossy, RecordWriter, Severity},
};
use crate::probes::process::decode::comm;
use crate::probes::process::otlp::process_attrs;
use std::fmt;

/// What was decided on, as the body says it.
struct What<'a>(&'a Decision);

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, r) = (self.0, &self.0.raw);
        match d.hook {
            "connect" | "bind" => write!(
                f,
                "{} {} {}:{}",
                d.hook,
                transport(r.proto),
                crate::probes::ip_from16(r.addr),
                r.port
            ),
            "socket_create" => write!(f, "socket(family {}, type {})", r.family, r.proto),
            "device" => write!(f, "device {}:{}", r.major, r.minor),
            "file_modify" => write!(f, "{} of inode {}", file_op_name(r.access), r.ino),
            // request_module() (auto-loading) rather than a load.
            "module_load" if r.access == 1 => f.write_str("module_load (request_module)"),
            "file_open" | "exec" | "ptrace" if r.target_pid != 0 => {
                write!(f, "ptrace of pid {}", r.target_pid)
            }
            "file_open" | "exec" | "ptrace" => write!(f, "{} of inode {}", d.hook, r.ino),
            other => f.write_str(other),
        }
    }
}

fn transport(proto: u32) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        _ => "other",
    }
}

/// An enforcement decision: WARN for deny, INFO for audit.
pub fn policy_decision(enc: &mut impl Encode, d: &Decision, clock: &WallClock, observed: u64) {
    let r = &d.raw;
    let deny = d.action == "deny";
    let mut w = enc.log(
        clock.to_unix_ns(r.hdr.ts_ns),
        if deny { Severity::Warn } else { Severity::Info },
    );
    w.body(format_args!(
        "{} {} by {} (pid {}): rule {}",
        if deny { "denied" } else { "audited" },
        What(d),
        Lossy(comm(&r.hdr)),
        r.hdr.pid,
        d.rule
    ));
    // Decisions are not enriched: the kernel decided before any lookup.
    process_attrs(&mut w, &r.hdr, &Context::default());
    w.str(attr::TAPIO_LSM_RULE, &d.rule);
    w.str(attr::TAPIO_LSM_ACTION, d.action);
    w.str(attr::TAPIO_LSM_HOOK, d.hook);
    match d.hook {
        "connect" | "bind" => {
            w.display(attr::SERVER_ADDRESS, crate::probes::ip_from16(r.addr));
            w.int(attr::SERVER_PORT, i64::from(r.port));
            w.str(attr::NETWORK_TRANSPORT, transport(r.proto));
        }
        "device" => {
            w.display(
                attr::TAPIO_LSM_DEVICE,
                format_args!("{}:{}", r.major, r.minor),
            );
            w.int(attr::TAPIO_LSM_ACCESS, i64::from(r.access));
        }
        "file_modify" => {
            w.int(attr::FILE_INODE, r.ino as i64);
            w.str(attr::TAPIO_SECURITY_FILE_OPERATION, file_op_name(r.access));
        }
        "module_load" if r.access == 1 => {}
        "file_open" | "exec" | "ptrace" => {
            w.int(attr::FILE_INODE, r.ino as i64);
            if r.target_pid != 0 {
                w.int(attr::TAPIO_LSM_TARGET_PID, i64::from(r.target_pid));
            }
        }
        _ => {}
    }
    w.finish_log(observed, event::SECURITY_POLICY_DECISION);
}

#[cfg(test)]
mod tests {
    //! The direct writer against the opentelemetry-proto mapping it
    //! replaced (`legacy`), on the same fixtures: equal bytes, for every
    //! hook and both actions.
    use super::super::legacy;
    use super::*;
    use crate::otel::wire::{Encoder, RECORD_FIELD};
    use tapio_shared::tapio_lsm_decision;

    #[test]
    fn policy_decision_matches_the_old_mapping_for_every_hook() {
        let clock = WallClock::with_offset(2_000);
        let mut raw: tapio_lsm_decision = unsafe { std::mem::zeroed() };
        raw.hdr.ts_ns = 8_000_000_000;
        raw.hdr.pid = 4242;
        raw.hdr.tid = 4243;
        raw.hdr.ppid = 1;
        raw.hdr.uid = 1000;
        raw.hdr.cgroup_id = 77;
        for (i, c) in b"curl\xff".iter().enumerate() {
            raw.hdr.comm[i] = *c as _;
        }
        raw.addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        raw.port = 443;
        raw.major = 1;
        raw.minor = 3;
        raw.ino = 1234;
        raw.family = 10;
        let hooks = [
            "connect",
            "bind",
            "socket_create",
            "device",
            "file_modify",
            "module_load",
            "file_open",
            "exec",
            "ptrace",
            "bpf",
        ];
        for hook in hooks {
            for action in ["deny", "audit"] {
                for (proto, access, target) in [(6u8, 1u32, 0u32), (17, 2, 99), (0, 4, 0)] {
                    let mut raw = raw;
                    raw.proto = proto as _;
                    raw.access = access as _;
                    raw.target_pid = target as _;
                    let d = Decision {
                        raw,
                        rule: "no-egress".into(),
                        hook,
                        action,
                    };
                    let mut enc = Encoder::default();
                    policy_decision(&mut enc, &d, &clock, 5);
                    let old = legacy::policy_decision(&d, &clock, 5);
                    let mut want = Vec::new();
                    prost::encoding::message::encode(RECORD_FIELD, &old, &mut want);
                    assert_eq!(enc.record(), &want[..], "{hook} {action} {proto} {access}");
                }
            }
        }
    }
}
