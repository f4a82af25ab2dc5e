//! Typed probe events → OTLP log records (`EventName` set, kernel time).

use super::{kv_bool, kv_int, kv_str, names::attr, names::event, rfc3339};
use crate::clock::WallClock;
use crate::enrich::{cgroup::Workload, ProcessInfo};
use crate::probes::process::Common;
use crate::telemetry::{ReloadResult, ReloadSource};
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, KeyValue},
    logs::v1::{LogRecord, SeverityNumber},
};

/// What enrichment added to a process record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessContext {
    pub owner: Option<String>,
    pub workload: Workload,
    /// For exits: what the process ran, if we saw its exec.
    pub info: Option<ProcessInfo>,
}

pub(crate) fn record(
    name: &str,
    severity: SeverityNumber,
    time: u64,
    observed: u64,
    body: String,
    attributes: Vec<KeyValue>,
) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        severity_number: severity as i32,
        severity_text: severity_text(severity).to_string(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(body)),
        }),
        attributes,
        event_name: name.to_string(),
        ..Default::default()
    }
}

fn severity_text(s: SeverityNumber) -> &'static str {
    match s {
        SeverityNumber::Warn => "WARN",
        SeverityNumber::Error => "ERROR",
        _ => "INFO",
    }
}

pub(crate) fn common_attrs(c: &Common, ctx: &ProcessContext) -> Vec<KeyValue> {
    let mut a = vec![
        kv_int(attr::PROCESS_PID, i64::from(c.pid)),
        kv_int(attr::PROCESS_PARENT_PID, i64::from(c.ppid)),
        kv_int(attr::THREAD_ID, i64::from(c.tid)),
        kv_str(attr::PROCESS_EXECUTABLE_NAME, c.comm.clone()),
        kv_int(attr::PROCESS_USER_ID, i64::from(c.uid)),
        kv_int(attr::TAPIO_CGROUP_ID, c.cgroup_id as i64),
    ];
    context_attrs(ctx, &mut a);
    a
}

/// What enrichment added: owner name, container, pod, systemd unit.
pub(crate) fn context_attrs(ctx: &ProcessContext, a: &mut Vec<KeyValue>) {
    if let Some(o) = &ctx.owner {
        a.push(kv_str(attr::PROCESS_OWNER, o.clone()));
    }
    if let Some(id) = &ctx.workload.container_id {
        a.push(kv_str(attr::CONTAINER_ID, id.clone()));
    }
    if let Some(uid) = &ctx.workload.pod_uid {
        a.push(kv_str(attr::K8S_POD_UID, uid.clone()));
    }
    if let Some(unit) = &ctx.workload.systemd_unit {
        a.push(kv_str(attr::TAPIO_SYSTEMD_UNIT, unit.clone()));
    }
}

/// A config reload: INFO when the new policy is in force, ERROR (with the
/// reason as the body) when the previous policy stays.
/// A policy change from `source`; `origin` is the file's path or the OpAMP
/// server's URL.
pub fn config_reload(
    source: ReloadSource,
    origin: &str,
    result: ReloadResult,
    why: Option<&str>,
    now: u64,
) -> LogRecord {
    let (severity, body) = match why {
        None => (SeverityNumber::Info, format!("{origin}: policy reloaded")),
        Some(w) => (
            SeverityNumber::Error,
            format!("{origin}: {w}; the previous policy stays in force"),
        ),
    };
    let mut attrs = vec![
        kv_str(attr::TAPIO_RELOAD_RESULT, result.name()),
        kv_str(attr::TAPIO_CONFIG_SOURCE, source.name()),
    ];
    if source == ReloadSource::File {
        attrs.push(kv_str(attr::TAPIO_CONFIG_PATH, origin.to_string()));
    }
    record(event::TAPIO_CONFIG_RELOAD, severity, now, now, body, attrs)
}

/// An enforcement decision: WARN for deny, INFO for audit.
pub fn policy_decision(
    d: &crate::probes::lsm::Decision,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
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

/// An XDP auto-block started (WARN) or ended (INFO).
pub fn ddos_mitigation(
    m: &crate::probes::xdp::Mitigation,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let state = if m.started { "started" } else { "ended" };
    let mut attributes = vec![
        kv_str(attr::SOURCE_ADDRESS, m.source.to_string()),
        kv_str(attr::NETWORK_INTERFACE_NAME, m.interface.clone()),
        kv_str(attr::TAPIO_XDP_REASON, m.reason.name()),
        kv_str(attr::TAPIO_MITIGATION_STATE, state),
        kv_str(
            attr::TAPIO_MITIGATION_UNTIL,
            rfc3339(clock.to_unix_ns(m.until_ns)),
        ),
    ];
    let (severity, body) = if m.started {
        (
            SeverityNumber::Warn,
            format!(
                "{} blocked on {} for {}s: over its SYN rate",
                m.source,
                m.interface,
                m.until_ns.saturating_sub(m.at_ns) / 1_000_000_000
            ),
        )
    } else {
        attributes.push(kv_int(attr::TAPIO_MITIGATION_DROPPED, m.dropped as i64));
        (
            SeverityNumber::Info,
            format!(
                "{} unblocked on {} after dropping {} packets",
                m.source, m.interface, m.dropped
            ),
        )
    };
    record(
        event::SECURITY_DDOS_MITIGATION,
        severity,
        clock.to_unix_ns(m.at_ns),
        observed,
        body,
        attributes,
    )
}

/// `network.flow.classified`: a flow's L7 protocol, decided by the tc probe.
pub fn flow_classified(
    f: &crate::probes::tc::Flow,
    iface: &str,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let mut attrs = vec![
        kv_str(attr::NETWORK_PROTOCOL_NAME, f.protocol),
        kv_str(attr::NETWORK_TRANSPORT, f.transport),
        kv_str(
            attr::NETWORK_TYPE,
            if f.server.is_ipv4() { "ipv4" } else { "ipv6" },
        ),
        kv_str(attr::SERVER_ADDRESS, f.server.ip().to_string()),
        kv_int(attr::SERVER_PORT, i64::from(f.server.port())),
        kv_str(attr::CLIENT_ADDRESS, f.client.ip().to_string()),
        kv_int(attr::CLIENT_PORT, i64::from(f.client.port())),
        kv_str(attr::NETWORK_INTERFACE_NAME, iface.to_string()),
    ];
    if let Some(sni) = &f.sni {
        attrs.push(kv_str(attr::TLS_CLIENT_SERVER_NAME, sni.clone()));
    }
    if f.sni_cut {
        attrs.push(kv_bool(attr::TAPIO_TRUNCATED, true));
    }
    record(
        event::NETWORK_FLOW_CLASSIFIED,
        SeverityNumber::Info,
        clock.to_unix_ns(f.ts_boot_ns),
        observed,
        format!("{} {} -> {}", f.protocol, f.client, f.server),
        attrs,
    )
}

/// `network.circuit_breaker.state_change`: WARN when a backend is
/// ejected, INFO when it is tried again or back.
pub fn circuit_breaker_change(c: &crate::probes::tc::BreakerChange, now: u64) -> LogRecord {
    use crate::probes::tc::breaker_state_name;
    let to = breaker_state_name(c.to);
    let severity = if to == "open" {
        SeverityNumber::Warn
    } else {
        SeverityNumber::Info
    };
    record(
        event::NETWORK_CIRCUIT_BREAKER_STATE_CHANGE,
        severity,
        now,
        now,
        format!(
            "{} backend {}: circuit breaker {} -> {to}",
            c.service,
            c.backend,
            breaker_state_name(c.from)
        ),
        vec![
            kv_str(attr::TAPIO_TC_SERVICE, c.service.clone()),
            kv_str(attr::TAPIO_TC_BACKEND, c.backend.to_string()),
            kv_str(attr::TAPIO_TC_BREAKER_STATE, to),
            kv_str(attr::TAPIO_TC_BREAKER_PREVIOUS, breaker_state_name(c.from)),
            kv_int(attr::TAPIO_TC_FAILURES_IN_A_ROW, c.failures_in_a_row as i64),
        ],
    )
}
