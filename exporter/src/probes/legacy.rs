//! What the opentelemetry-proto mappings the direct writers replaced
//! (`probes/<name>/legacy.rs`) share: a LogRecord with its common process
//! attributes. Kept, like them, only to compare with and to measure
//! against.

use crate::enrich::{cgroup::Workload, ProcessInfo};
use crate::otel::{kv_int, kv_str, names::attr};
use crate::probes::process::Common;
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

pub fn record(
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

pub fn common_attrs(c: &Common, ctx: &ProcessContext) -> Vec<KeyValue> {
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
pub fn context_attrs(ctx: &ProcessContext, a: &mut Vec<KeyValue>) {
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
