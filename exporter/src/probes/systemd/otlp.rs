//! Unit records → OTLP log records (`systemd.unit.start`,
//! `systemd.unit.stop`), written straight from the kernel record. The one
//! place these records' names and shapes are decided.

use super::decode::{UnitPath, UnitRecord};
use crate::clock::WallClock;
use crate::enrich::Context;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};
use crate::probes::process::otlp::{process_attrs, SignalName};

/// How a unit ended, in systemd's words (`Result=` of `systemctl show`).
pub fn result(r: &UnitRecord) -> &'static str {
    let s = &r.raw.state;
    if s.oom_kills > 0 {
        "oom-kill"
    } else if s.failed_exits == 0 {
        "success"
    } else if s.last_exit_signal != 0 {
        "signal"
    } else {
        "exit-code"
    }
}

fn unit_attrs(w: &mut impl RecordWriter, r: &UnitRecord, p: &UnitPath<'_>, path: &str) {
    w.str(attr::TAPIO_SYSTEMD_UNIT, p.unit);
    w.str(attr::TAPIO_SYSTEMD_SLICE, p.slice);
    w.str(attr::TAPIO_CGROUP_PATH, path);
    w.int(attr::TAPIO_CGROUP_ID, r.raw.unit_cgroup_id as i64);
    if r.preexisting() {
        w.bool(attr::TAPIO_SYSTEMD_UNIT_PREEXISTING, true);
    }
}

/// `systemd.unit.start`: the header is the unit's first process.
pub fn start(
    enc: &mut impl Encode,
    r: &UnitRecord,
    p: &UnitPath<'_>,
    path: &str,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let mut w = enc.log(clock.to_unix_ns(r.raw.hdr.ts_ns), Severity::Info);
    w.body(format_args!(
        "unit {} started (first pid {})",
        p.unit, r.raw.state.first_pid
    ));
    // The process attributes first: the unit's own name wins over what
    // enrichment derived for the task.
    process_attrs(&mut w, &r.raw.hdr, ctx);
    unit_attrs(&mut w, r, p, path);
    w.int(
        attr::TAPIO_SYSTEMD_UNIT_FIRST_PID,
        i64::from(r.raw.state.first_pid),
    );
    w.str(
        attr::TAPIO_SYSTEMD_UNIT_ENTRY,
        if r.forked_in() { "fork" } else { "attach" },
    );
    w.finish_log(observed, event::SYSTEMD_UNIT_START);
}

/// `systemd.unit.stop`: WARN when a process failed or was OOM-killed.
/// The header is the task that removed the cgroup (usually systemd).
pub fn stop(
    enc: &mut impl Encode,
    r: &UnitRecord,
    p: &UnitPath<'_>,
    path: &str,
    clock: &WallClock,
    observed: u64,
) {
    let s = &r.raw.state;
    let res = result(r);
    let severity = if res == "success" {
        Severity::Info
    } else {
        Severity::Warn
    };
    let mut w = enc.log(clock.to_unix_ns(r.raw.hdr.ts_ns), severity);
    w.body(format_args!(
        "unit {} stopped: {res} ({} of {} processes failed, {} OOM-killed)",
        p.unit, s.failed_exits, s.exits, s.oom_kills
    ));
    unit_attrs(&mut w, r, p, path);
    w.str(attr::TAPIO_SYSTEMD_UNIT_RESULT, res);
    w.int(attr::TAPIO_SYSTEMD_UNIT_EXITS, i64::from(s.exits));
    w.int(
        attr::TAPIO_SYSTEMD_UNIT_FAILED_EXITS,
        i64::from(s.failed_exits),
    );
    w.int(attr::TAPIO_SYSTEMD_UNIT_OOM_KILLS, i64::from(s.oom_kills));
    if s.first_pid != 0 {
        w.int(attr::TAPIO_SYSTEMD_UNIT_FIRST_PID, i64::from(s.first_pid));
    }
    if s.created_ns != 0 && !r.preexisting() {
        let secs = r.raw.hdr.ts_ns.saturating_sub(s.created_ns) as f64 / 1e9;
        w.f64(attr::TAPIO_SYSTEMD_UNIT_LIFETIME, secs);
    }
    if s.failed_exits > 0 {
        // The last failure, as the process probe would describe its exit.
        w.int(attr::PROCESS_PID, i64::from(s.last_failed_pid));
        w.int(attr::PROCESS_EXIT_CODE, i64::from(s.last_exit_code));
        if s.last_exit_signal != 0 {
            w.display(
                attr::TAPIO_PROCESS_EXIT_SIGNAL,
                SignalName(s.last_exit_signal),
            );
        }
    }
    w.finish_log(observed, event::SYSTEMD_UNIT_STOP);
}

#[cfg(test)]
mod tests {
    use super::super::decode::{decode, fixtures::unit_bytes, unit_path};
    use super::*;
    use crate::otel::wire::Encoder;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use prost::Message;
    use tapio_shared::tapio_unit_op as op;

    fn decoded(enc: &Encoder) -> LogRecord {
        let got = enc.record();
        let mut body = &got[1..];
        prost::encoding::decode_varint(&mut body).unwrap();
        LogRecord::decode(body).unwrap()
    }

    fn get<'a>(a: &'a [KeyValue], k: &str) -> Option<&'a Value> {
        a.iter()
            .find(|kv| kv.key == k)?
            .value
            .as_ref()?
            .value
            .as_ref()
    }

    #[test]
    fn stop_reports_oom_and_failures_as_warn() {
        let clock = WallClock::with_offset(1_000);
        let path = "/system.slice/db.service";
        let p = unit_path(path).unwrap();
        let cases = [
            (0, 0, 0, 0, "success", "INFO"),
            (1, 0, 3, 0, "exit-code", "WARN"),
            (1, 0, 0, 6, "signal", "WARN"),
            (1, 1, 0, 9, "oom-kill", "WARN"),
        ];
        for (failed, oom, code, sig, want, sev) in cases {
            let b = unit_bytes(op::TAPIO_UNIT_REMOVED, path, |r| {
                r.hdr.ts_ns = 9_000_000_000;
                r.state.created_ns = 5_000_000_000;
                r.state.first_pid = 300;
                r.state.exits = 2;
                r.state.failed_exits = failed;
                r.state.oom_kills = oom;
                r.state.last_failed_pid = 301;
                r.state.last_exit_code = code;
                r.state.last_exit_signal = sig;
            });
            let r = decode(&b).unwrap();
            let mut enc = Encoder::default();
            stop(&mut enc, &r, &p, path, &clock, 5);
            let rec = decoded(&enc);
            assert_eq!(rec.event_name, "systemd.unit.stop");
            assert_eq!(rec.severity_text, sev, "{want}");
            let a = &rec.attributes;
            assert_eq!(
                get(a, "tapio.systemd.unit.result"),
                Some(&Value::StringValue(want.into()))
            );
            assert_eq!(
                get(a, "tapio.systemd.unit"),
                Some(&Value::StringValue("db.service".into()))
            );
            assert_eq!(
                get(a, "tapio.systemd.unit.lifetime"),
                Some(&Value::DoubleValue(4.0))
            );
            assert_eq!(
                get(a, "tapio.systemd.unit.first_pid"),
                Some(&Value::IntValue(300))
            );
            assert_eq!(
                get(a, "process.pid").is_some(),
                failed > 0,
                "the failed process only when one failed"
            );
            if sig == 9 {
                assert_eq!(
                    get(a, "tapio.process.exit.signal"),
                    Some(&Value::StringValue("SIGKILL".into()))
                );
            }
        }
    }

    #[test]
    fn a_preexisting_unit_has_no_lifetime() {
        let path = "/user.slice/user-1000.slice/session-3.scope";
        let p = unit_path(path).unwrap();
        let b = unit_bytes(op::TAPIO_UNIT_REMOVED, path, |r| {
            r.state.created_ns = 1;
            r.state.flags = tapio_shared::tapio_unit_flags::TAPIO_UNIT_PREEXISTING;
        });
        let r = decode(&b).unwrap();
        let mut enc = Encoder::default();
        stop(&mut enc, &r, &p, path, &WallClock::with_offset(0), 0);
        let rec = decoded(&enc);
        assert_eq!(get(&rec.attributes, "tapio.systemd.unit.lifetime"), None);
        assert_eq!(
            get(&rec.attributes, "tapio.systemd.unit.preexisting"),
            Some(&Value::BoolValue(true))
        );
        assert_eq!(
            get(&rec.attributes, "tapio.systemd.slice"),
            Some(&Value::StringValue("user-1000.slice".into()))
        );
    }

    #[test]
    fn start_names_the_first_process() {
        let path = "/system.slice/web.service";
        let p = unit_path(path).unwrap();
        let b = unit_bytes(op::TAPIO_UNIT_STARTED, path, |r| {
            r.state.first_pid = 1234;
            r.flags = tapio_shared::tapio_unit_flags::TAPIO_UNIT_FORKED_IN;
        });
        let r = decode(&b).unwrap();
        let mut enc = Encoder::default();
        start(
            &mut enc,
            &r,
            &p,
            path,
            &Context::default(),
            &WallClock::with_offset(0),
            0,
        );
        let rec = decoded(&enc);
        assert_eq!(rec.event_name, "systemd.unit.start");
        assert_eq!(
            get(&rec.attributes, "tapio.systemd.unit.first_pid"),
            Some(&Value::IntValue(1234))
        );
        assert_eq!(
            get(&rec.attributes, "tapio.systemd.unit.entry"),
            Some(&Value::StringValue("fork".into()))
        );
        assert_eq!(
            get(&rec.attributes, "process.pid"),
            Some(&Value::IntValue(1234))
        );
    }
}
