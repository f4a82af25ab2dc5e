//! Tapio's OTLP metrics in the Prometheus text exposition format (0.0.4),
//! named as the collector's `prometheus` exporter names them, so the same
//! dashboards work whether Prometheus scrapes Tapio or a collector.
//!
//! Hand-written rather than through `prometheus-client`: that crate keeps
//! live instruments in its own registry and writes only OpenMetrics, adding
//! unit suffixes by its own rule (`tapio.xdp.bytes` in `By` would become
//! `…_bytes_bytes_total`), while here every point already exists as OTLP
//! data and the names must follow the collector's translator exactly.
//! The format itself is a few lines of escaping.

use super::names::{Instrument, MetricDef};
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value as AnyValue, KeyValue},
    metrics::v1::{metric::Data, number_data_point::Value, Gauge, Metric, NumberDataPoint, Sum},
    resource::v1::Resource,
};
use std::fmt::Write;

/// The content type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The collector's unit suffixes (prometheus translator, the units Tapio
/// uses): `{…}` annotations carry no suffix; `1` is `ratio` on gauges only.
fn unit_suffix(unit: &str, instrument: Instrument) -> Option<&'static str> {
    match unit {
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        "1" if instrument == Instrument::Gauge => Some("ratio"),
        _ => None,
    }
}

/// A metric's Prometheus name as the collector spells it: non-alphanumeric
/// runs become `_`, the unit is appended unless the name already says it,
/// counters end in `_total`. Histograms add `_bucket`, `_sum`, `_count`.
pub fn name(metric: &str, unit: &str, instrument: Instrument) -> String {
    let mut tokens: Vec<&str> = metric
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let counter = instrument == Instrument::Counter;
    if counter {
        tokens.retain(|t| *t != "total");
    }
    if let Some(u) = unit_suffix(unit, instrument) {
        if !tokens.contains(&u) {
            tokens.push(u);
        }
    }
    if counter {
        tokens.push("total");
    }
    tokens.join("_")
}

/// [`name`] of a metric in the names table.
pub fn def_name(def: &MetricDef) -> String {
    name(def.name, def.unit, def.instrument)
}

/// Every series name a metric of the names table shows up as.
pub fn series_names(def: &MetricDef) -> Vec<String> {
    let base = def_name(def);
    match def.instrument {
        Instrument::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{base}{s}"))
            .collect(),
        _ => vec![base],
    }
}

/// An attribute key as a label name.
fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

fn label_value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    let text = match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    };
    text.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn labels(attrs: &[KeyValue], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attrs
        .iter()
        .map(|a| format!("{}=\"{}\"", label_name(&a.key), label_value(&a.value)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

fn number(p: &NumberDataPoint) -> String {
    match p.value {
        Some(Value::AsInt(i)) => i.to_string(),
        Some(Value::AsDouble(d)) => float(d),
        None => "0".to_string(),
    }
}

/// One family: the `# HELP`/`# TYPE` header once, then every series.
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    lines: Vec<String>,
}

/// Render `metrics` (as the OTLP exporter would send them) and a
/// `target_info` series with the resource's attributes, as the collector
/// does. Metrics of one name (from several producers) form one family.
pub fn render(resource: &Resource, metrics: &[Metric]) -> String {
    let mut families: Vec<Family> = Vec::new();
    for m in metrics {
        let (instrument, kind) = match &m.data {
            Some(Data::Sum(s)) if s.is_monotonic => (Instrument::Counter, "counter"),
            Some(Data::Sum(_)) | Some(Data::Gauge(_)) => (Instrument::Gauge, "gauge"),
            Some(Data::Histogram(_)) => (Instrument::Histogram, "histogram"),
            // Tapio makes none of these.
            _ => continue,
        };
        let base = name(&m.name, &m.unit, instrument);
        let mut lines = Vec::new();
        match &m.data {
            Some(Data::Sum(Sum { data_points, .. })) | Some(Data::Gauge(Gauge { data_points })) => {
                for p in data_points {
                    lines.push(format!(
                        "{base}{} {}",
                        labels(&p.attributes, None),
                        number(p)
                    ));
                }
            }
            Some(Data::Histogram(h)) => {
                for p in &h.data_points {
                    let mut cumulative = 0u64;
                    for (i, c) in p.bucket_counts.iter().enumerate() {
                        cumulative += c;
                        let le = p
                            .explicit_bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_string(), |b| float(*b));
                        lines.push(format!(
                            "{base}_bucket{} {cumulative}",
                            labels(&p.attributes, Some(("le", le)))
                        ));
                    }
                    if p.bucket_counts.is_empty() {
                        lines.push(format!(
                            "{base}_bucket{} {}",
                            labels(&p.attributes, Some(("le", "+Inf".into()))),
                            p.count
                        ));
                    }
                    let l = labels(&p.attributes, None);
                    lines.push(format!("{base}_sum{l} {}", float(p.sum.unwrap_or(0.0))));
                    lines.push(format!("{base}_count{l} {}", p.count));
                }
            }
            _ => {}
        }
        match families.iter_mut().find(|f| f.name == base) {
            Some(f) => f.lines.extend(lines),
            None => families.push(Family {
                name: base,
                kind,
                help: m.description.clone(),
                lines,
            }),
        }
    }
    let mut out = String::new();
    for f in &families {
        let help = f.help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(out, "# HELP {} {help}", f.name);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for l in &f.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    let _ = writeln!(out, "# HELP target_info Target metadata");
    let _ = writeln!(out, "# TYPE target_info gauge");
    let _ = writeln!(out, "target_info{} 1", labels(&resource.attributes, None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::{kv_str, metrics, names};
    use crate::telemetry::{HistogramSnapshot, Telemetry};

    #[test]
    fn names_follow_the_collector() {
        use Instrument::*;
        assert_eq!(
            name("tapio.events.received", "{event}", Counter),
            "tapio_events_received_total"
        );
        assert_eq!(
            name("tapio.pipeline.latency", "s", Histogram),
            "tapio_pipeline_latency_seconds"
        );
        // The unit is not repeated when the name says it already.
        assert_eq!(
            name("tapio.xdp.bytes", "By", Counter),
            "tapio_xdp_bytes_total"
        );
        assert_eq!(
            name("tapio.probe.attached", "1", Gauge),
            "tapio_probe_attached_ratio"
        );
        assert_eq!(name("tapio.lsm.rules", "{rule}", Gauge), "tapio_lsm_rules");
        assert_eq!(
            name("dns.lookup.duration", "s", Histogram),
            "dns_lookup_duration_seconds"
        );
        assert_eq!(name("a.total.count", "1", Counter), "a_count_total");
    }

    /// The exact text for a counter, a gauge and a histogram.
    #[test]
    fn renders_the_text_format() {
        let t = Telemetry::new(1);
        let p = t.probe("process");
        p.received
            .fetch_add(42, std::sync::atomic::Ordering::Relaxed);
        let all = metrics::self_telemetry(&t, 2);
        let pick = |n: &str| all.iter().find(|m| m.name == n).unwrap().clone();
        let hist = metrics::histogram_seconds(
            &names::PIPELINE_LATENCY,
            1,
            2,
            vec![(
                vec![kv_str("tapio.probe", "dns")],
                HistogramSnapshot {
                    bounds_ns: &[500_000_000, 1_000_000_000],
                    counts: vec![1, 2, 3],
                    sum_ns: 7_250_000_000,
                },
            )],
        );
        let queue = metrics::gauge(
            &names::EXPORT_QUEUE_LENGTH,
            2,
            vec![(vec![kv_str("tapio.signal", "a\"b\\c\nd")], 3)],
        );
        let resource = Resource {
            attributes: vec![kv_str("service.name", "tapio")],
            ..Default::default()
        };
        let text = render(&resource, &[pick("tapio.events.received"), queue, hist]);
        assert_eq!(
            text,
            "# HELP tapio_events_received_total Records read from a probe's ring buffer.\n\
             # TYPE tapio_events_received_total counter\n\
             tapio_events_received_total{tapio_probe=\"process\"} 42\n\
             # HELP tapio_export_queue_length Records waiting in the export queue.\n\
             # TYPE tapio_export_queue_length gauge\n\
             tapio_export_queue_length{tapio_signal=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP tapio_pipeline_latency_seconds Time from the kernel seeing an event to its record being handed to the exporter.\n\
             # TYPE tapio_pipeline_latency_seconds histogram\n\
             tapio_pipeline_latency_seconds_bucket{tapio_probe=\"dns\",le=\"0.5\"} 1\n\
             tapio_pipeline_latency_seconds_bucket{tapio_probe=\"dns\",le=\"1\"} 3\n\
             tapio_pipeline_latency_seconds_bucket{tapio_probe=\"dns\",le=\"+Inf\"} 6\n\
             tapio_pipeline_latency_seconds_sum{tapio_probe=\"dns\"} 7.25\n\
             tapio_pipeline_latency_seconds_count{tapio_probe=\"dns\"} 6\n\
             # HELP target_info Target metadata\n\
             # TYPE target_info gauge\n\
             target_info{service_name=\"tapio\"} 1\n"
        );
    }

    #[test]
    fn one_family_per_name_across_producers() {
        let a = metrics::counter(&names::XDP_PACKETS, 0, 1, vec![(vec![kv_str("x", "1")], 1)]);
        let b = metrics::counter(&names::XDP_PACKETS, 0, 1, vec![(vec![kv_str("x", "2")], 2)]);
        let text = render(&Resource::default(), &[a, b]);
        assert_eq!(
            text.matches("# TYPE tapio_xdp_packets_total counter")
                .count(),
            1
        );
        assert!(text
            .contains("tapio_xdp_packets_total{x=\"1\"} 1\ntapio_xdp_packets_total{x=\"2\"} 2\n"));
    }
}
