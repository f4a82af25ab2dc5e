//! Typed probe events → OTLP log records (`EventName` set, kernel time).

use super::{kv_int, kv_str, names::attr, names::event};
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
