//! Tapio's self-telemetry (and, later, kernel-aggregated probe metrics) as
//! OTLP metrics: cumulative sums, gauges and explicit-bucket histograms.

use super::{kv_str, names, names::MetricDef};
use crate::telemetry::{
    DropReason, HistogramSnapshot, ReloadResult, ReloadSource, Signal, Source, Telemetry,
};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    metrics::v1::{
        metric::Data, number_data_point::Value, AggregationTemporality, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, Sum,
    },
};

fn metric(def: &MetricDef, data: Data) -> Metric {
    Metric {
        name: def.name.to_string(),
        description: def.description.to_string(),
        unit: def.unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

fn int_point(attrs: Vec<KeyValue>, start: u64, now: u64, v: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(Value::AsInt(v.min(i64::MAX as u64) as i64)),
        ..Default::default()
    }
}

/// A monotonic cumulative sum.
pub fn counter(def: &MetricDef, start: u64, now: u64, points: Vec<(Vec<KeyValue>, u64)>) -> Metric {
    let data_points = points
        .into_iter()
        .map(|(a, v)| int_point(a, start, now, v))
        .collect();
    metric(
        def,
        Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
    )
}

/// A gauge.
pub fn gauge(def: &MetricDef, now: u64, points: Vec<(Vec<KeyValue>, u64)>) -> Metric {
    let data_points = points
        .into_iter()
        .map(|(a, v)| int_point(a, 0, now, v))
        .collect();
    metric(def, Data::Gauge(Gauge { data_points }))
}

/// A cumulative histogram of nanosecond values, exported in seconds.
pub fn histogram_seconds(
    def: &MetricDef,
    start: u64,
    now: u64,
    points: Vec<(Vec<KeyValue>, HistogramSnapshot)>,
) -> Metric {
    let data_points = points
        .into_iter()
        .map(|(attributes, h)| HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: h.count(),
            sum: Some(h.sum_ns as f64 / 1e9),
            bucket_counts: h.counts.clone(),
            explicit_bounds: h.bounds_ns.iter().map(|b| *b as f64 / 1e9).collect(),
            ..Default::default()
        })
        .collect();
    metric(
        def,
        Data::Histogram(Histogram {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    )
}

/// One series of an in-kernel per-CPU log2 histogram, summed over CPUs:
/// (buckets, sum of ns).
pub fn sum_per_cpu_hist(per_cpu: &[tapio_shared::tapio_hist]) -> (Vec<u64>, u64) {
    let mut buckets = vec![0u64; tapio_shared::TAPIO_HIST_BUCKETS as usize];
    let mut sum = 0u64;
    for h in per_cpu {
        for (b, n) in buckets.iter_mut().zip(h.buckets.iter()) {
            *b += n;
        }
        sum += h.sum_ns;
    }
    (buckets, sum)
}

/// A cumulative histogram from in-kernel log2 buckets: bucket i counted
/// durations in [2^i, 2^(i+1)) ns; exported with upper bounds 2^(i+1) ns, in
/// seconds.
pub fn log2_histogram_seconds(
    def: &MetricDef,
    start: u64,
    now: u64,
    points: Vec<(Vec<KeyValue>, Vec<u64>, u64)>,
) -> Metric {
    let data_points = points
        .into_iter()
        .map(|(attributes, buckets, sum_ns)| {
            let n = buckets.len();
            HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: buckets.iter().sum(),
                sum: Some(sum_ns as f64 / 1e9),
                explicit_bounds: (1..n).map(|i| (1u64 << i) as f64 / 1e9).collect(),
                bucket_counts: buckets,
                ..Default::default()
            }
        })
        .collect();
    metric(
        def,
        Data::Histogram(Histogram {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    )
}

/// Every self-telemetry metric, as of `now` (Unix ns).
pub fn self_telemetry(t: &Telemetry, now: u64) -> Vec<Metric> {
    use names::attr::{TAPIO_ATTACH_TYPE, TAPIO_PROBE, TAPIO_REASON, TAPIO_SIGNAL};
    use std::sync::atomic::Ordering::Relaxed;
    let start = t.start_unix_ns;
    let probes = t.probes();
    let mut received = Vec::new();
    let mut lost = Vec::new();
    let mut latency = Vec::new();
    let mut attached = Vec::new();
    for p in &probes {
        received.push((vec![kv_str(TAPIO_PROBE, p.name)], p.received.load(Relaxed)));
        for (reason, n) in p.lost() {
            lost.push((
                vec![kv_str(TAPIO_PROBE, p.name), kv_str(TAPIO_REASON, reason)],
                n,
            ));
        }
        latency.push((vec![kv_str(TAPIO_PROBE, p.name)], p.latency.snapshot()));
        let at = p.attach_type();
        if !at.is_empty() {
            attached.push((
                vec![kv_str(TAPIO_PROBE, p.name), kv_str(TAPIO_ATTACH_TYPE, at)],
                p.attached_value(),
            ));
        }
    }
    let mut sent = Vec::new();
    let mut dropped = Vec::new();
    let mut failures = Vec::new();
    let mut queue = Vec::new();
    for s in Signal::ALL {
        let st = t.signal(s);
        let sig = || vec![kv_str(TAPIO_SIGNAL, s.name())];
        sent.push((sig(), st.sent.load(Relaxed)));
        failures.push((sig(), st.failures.load(Relaxed)));
        queue.push((sig(), st.queue_len.load(Relaxed)));
        // Per probe that queued records on this signal, then the agent's
        // own records (no tapio.probe) last.
        let sources = t.sources();
        let order = sources
            .iter()
            .filter(|(src, _)| *src != Source::AGENT && st.is_used(*src))
            .map(|(src, n)| (*src, Some(*n)))
            .chain([(Source::AGENT, None)]);
        for (src, probe) in order {
            for r in DropReason::ALL {
                let mut attrs = vec![kv_str(TAPIO_SIGNAL, s.name())];
                if let Some(p) = probe {
                    attrs.push(kv_str(TAPIO_PROBE, p));
                }
                attrs.push(kv_str(TAPIO_REASON, r.name()));
                dropped.push((attrs, st.dropped_from(r, src)));
            }
        }
    }
    vec![
        counter(&names::EVENTS_RECEIVED, start, now, received),
        counter(&names::EVENTS_LOST, start, now, lost),
        counter(&names::EXPORT_SENT, start, now, sent),
        counter(&names::EXPORT_DROPPED, start, now, dropped),
        counter(&names::EXPORT_FAILURES, start, now, failures),
        gauge(&names::EXPORT_QUEUE_LENGTH, now, queue),
        histogram_seconds(&names::PIPELINE_LATENCY, start, now, latency),
        gauge(&names::PROBE_ATTACHED, now, attached),
        counter(
            &names::CONFIG_RELOADS,
            start,
            now,
            ReloadSource::ALL
                .iter()
                .flat_map(|s| ReloadResult::ALL.iter().map(move |r| (*s, *r)))
                .map(|(s, r)| {
                    (
                        vec![
                            kv_str(names::attr::TAPIO_CONFIG_SOURCE, s.name()),
                            kv_str(names::attr::TAPIO_RELOAD_RESULT, r.name()),
                        ],
                        t.reloads.get(s, r),
                    )
                })
                .collect(),
        ),
        counter(
            &names::OPAMP_EXCHANGES,
            start,
            now,
            [("ok", &t.opamp.ok), ("failed", &t.opamp.failed)]
                .into_iter()
                .map(|(r, n)| {
                    (
                        vec![kv_str(names::attr::TAPIO_OPAMP_RESULT, r)],
                        n.load(Relaxed),
                    )
                })
                .collect(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn every_defined_metric_is_exported_with_its_definition() {
        let t = Telemetry::new(10);
        let p = t.probe("process");
        p.received.fetch_add(5, Relaxed);
        p.latency.record_ns(1_000);
        p.set_attach_type("tp_btf");
        p.set_kernel_lost_reader(Box::new(|| Some(vec![3, 0, 1])));
        t.signal(Signal::Logs)
            .drop_records(DropReason::QueueFull, 7);
        let ms = self_telemetry(&t, 20);
        let got: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
        let want: Vec<&str> = names::SELF_METRICS.iter().map(|m| m.name).collect();
        assert_eq!(got, want);

        let lost = ms.iter().find(|m| m.name == "tapio.events.lost").unwrap();
        let Some(Data::Sum(sum)) = &lost.data else {
            panic!()
        };
        assert!(sum.is_monotonic);
        let ringbuf = sum
            .data_points
            .iter()
            .find(|d| {
                d.attributes.iter().any(|a| {
                    a.key == "tapio.reason" && format!("{:?}", a.value).contains("ringbuf_full")
                })
            })
            .unwrap();
        assert_eq!(ringbuf.value, Some(Value::AsInt(3)));
        assert_eq!(ringbuf.start_time_unix_nano, 10);

        let dropped = ms
            .iter()
            .find(|m| m.name == "tapio.export.dropped")
            .unwrap();
        let Some(Data::Sum(sum)) = &dropped.data else {
            panic!()
        };
        assert!(sum
            .data_points
            .iter()
            .any(|d| d.value == Some(Value::AsInt(7))));

        let lat = ms
            .iter()
            .find(|m| m.name == "tapio.pipeline.latency")
            .unwrap();
        let Some(Data::Histogram(h)) = &lat.data else {
            panic!()
        };
        assert_eq!(h.data_points[0].count, 1);
        assert_eq!(
            h.data_points[0].bucket_counts.len(),
            h.data_points[0].explicit_bounds.len() + 1
        );
    }
}
