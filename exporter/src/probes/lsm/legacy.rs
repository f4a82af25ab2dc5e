//! The opentelemetry-proto mapping of lsm decisions that [`super::otlp`]
//! replaced, kept to compare with (the fidelity tests) and to measure
//! against.

use super::Decision;
use crate::clock::WallClock;
use crate::otel::{kv_int, kv_str, names::attr, names::event};
use crate::probes::legacy::{common_attrs, record, ProcessContext};
use crate::probes::process::Common;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

/// An enforcement decision: WARN for deny, INFO for audit.
pub fn policy_decision(d: &Decision, clock: &WallClock, observed: u64) -> LogRecord {
    let r = &d.raw;
    let common = Common::from(&r.hdr);
    let mut a = common_attrs(&common, &ProcessContext::default());
    a.push(kv_str(attr::TAPIO_LSM_RULE, d.rule.clone()));
    a.push(kv_str(attr::TAPIO_LSM_ACTION, d.action));
    a.push(kv_str(attr::TAPIO_LSM_HOOK, d.hook));
    let what = match d.hook {
        "connect" | "bind" => {
            let ip = crate::probes::ip_from16(r.addr);
            let transport = match r.proto {
                6 => "tcp",
                17 => "udp",
                _ => "other",
            };
            a.push(kv_str(attr::SERVER_ADDRESS, ip.to_string()));
            a.push(kv_int(attr::SERVER_PORT, i64::from(r.port)));
            a.push(kv_str(attr::NETWORK_TRANSPORT, transport));
            format!("{} {transport} {ip}:{}", d.hook, r.port)
        }
        "socket_create" => format!("socket(family {}, type {})", r.family, r.proto),
        "device" => {
            let dev = format!("{}:{}", r.major, r.minor);
            a.push(kv_str(attr::TAPIO_LSM_DEVICE, dev.clone()));
            a.push(kv_int(attr::TAPIO_LSM_ACCESS, i64::from(r.access)));
            format!("device {dev}")
        }
        "file_modify" => {
            let op = crate::probes::lsm::file_op_name(r.access);
            a.push(kv_int(attr::FILE_INODE, r.ino as i64));
            a.push(kv_str(attr::TAPIO_SECURITY_FILE_OPERATION, op));
            format!("{op} of inode {}", r.ino)
        }
        // request_module() (auto-loading) rather than a load.
        "module_load" if r.access == 1 => "module_load (request_module)".to_string(),
        "file_open" | "exec" | "ptrace" => {
            a.push(kv_int(attr::FILE_INODE, r.ino as i64));
            if r.target_pid != 0 {
                a.push(kv_int(attr::TAPIO_LSM_TARGET_PID, i64::from(r.target_pid)));
                format!("ptrace of pid {}", r.target_pid)
            } else {
                format!("{} of inode {}", d.hook, r.ino)
            }
        }
        other => other.to_string(),
    };
    let severity = if d.action == "deny" {
        SeverityNumber::Warn
    } else {
        SeverityNumber::Info
    };
    let verb = if d.action == "deny" {
        "denied"
    } else {
        "audited"
    };
    record(
        event::SECURITY_POLICY_DECISION,
        severity,
        clock.to_unix_ns(r.hdr.ts_ns),
        observed,
        format!(
            "{verb} {what} by {} (pid {}): rule {}",
            common.comm, common.pid, d.rule
        ),
        a,
    )
}
