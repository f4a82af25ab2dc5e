//! A counting OTLP/gRPC receiver for the sustained-load bench
//! (`bench/sustained_load.sh`): it keeps no records, only counts them, so it
//! stays small at hundreds of thousands of records per second.
//!
//! Counts log records and spans per `signal name label`, where the label is
//! the first `--match KEY=VALUE` the record's attributes satisfy (`other`
//! when none does), and failed spans get their `error.type`. Counts data
//! points per metric name and keeps the latest value of every sum point
//! (Tapio's own counters). Each `--tag KEY` the record carries is appended
//! to its label as `|KEY=value` (e.g. the close logs' direction, to see which
//! end of a connection a missing record was). `GET /counts` on the control
//! address returns the counts as JSON; they are printed once more on
//! SIGTERM/SIGINT. `--show-other N` prints the first N records that match
//! no `--match` (name, body, attributes) to stderr, one per line: what the
//! "background" of a run was.
//!
//!   otlp_count --grpc 127.0.0.1:4317 --control 127.0.0.1:4399 \
//!       --match process.executable.path=/tmp/x --match server.port=5300 \
//!       --tag tapio.connection.direction

use anyhow::{bail, Context, Result};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            logs_service_server::{LogsService, LogsServiceServer},
            ExportLogsServiceRequest, ExportLogsServiceResponse,
        },
        metrics::v1::{
            metrics_service_server::{MetricsService, MetricsServiceServer},
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        },
        trace::v1::{
            trace_service_server::{TraceService, TraceServiceServer},
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        },
    },
    common::v1::{any_value::Value, AnyValue, KeyValue},
    metrics::v1::{metric::Data, number_data_point},
    trace::v1::status::StatusCode,
};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use tapio_integration::str_attr;

/// Rotel batches up to 8,192 records per request: more than tonic's 4 MiB
/// default decoding limit at Tapio's record sizes.
const MAX_MESSAGE: usize = 256 << 20;

#[derive(Default)]
struct Counts {
    requests: u64,
    /// `signal name label` → records.
    records: BTreeMap<String, u64>,
    /// metric name → data points received.
    points: BTreeMap<String, u64>,
    /// `name{k=v,…}` → (time_unix_nano, value) of the latest sum point.
    sums: BTreeMap<String, (u64, f64)>,
}

struct State {
    matchers: Vec<(String, String)>,
    tags: Vec<String>,
    counts: Mutex<Counts>,
    /// How many more unmatched records to print (`--show-other`).
    show_other: std::sync::atomic::AtomicUsize,
}

impl State {
    fn label(&self, attrs: &[KeyValue]) -> String {
        let value = |k: &str| {
            attrs.iter().find(|a| a.key == k).and_then(|a| {
                match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    Value::IntValue(i) => Some(i.to_string()),
                    _ => None,
                }
            })
        };
        let mut label = self
            .matchers
            .iter()
            .find(|(k, v)| value(k).as_deref() == Some(v.as_str()))
            .map_or_else(|| "other".to_string(), |(k, v)| format!("{k}={v}"));
        for k in &self.tags {
            if let Some(v) = value(k) {
                label.push_str(&format!("|{k}={v}"));
            }
        }
        label
    }

    /// Print an unmatched record while `--show-other` allows.
    fn show(&self, label: &str, name: &str, body: Option<&AnyValue>, attrs: &[KeyValue]) {
        use std::sync::atomic::Ordering::Relaxed;
        if !label.starts_with("other") {
            return;
        }
        let left = self
            .show_other
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        if left.is_ok() {
            let kv: Vec<String> = attrs
                .iter()
                .map(|a| {
                    format!(
                        "{}={:?}",
                        a.key,
                        a.value.as_ref().and_then(|v| v.value.as_ref())
                    )
                })
                .collect();
            let body = body.and_then(|b| b.value.as_ref());
            eprintln!("other: {name} body={body:?} {}", kv.join(" "));
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn json(&self) -> serde_json::Value {
        let c = self.counts();
        let sums: BTreeMap<&String, f64> = c.sums.iter().map(|(k, (_, v))| (k, *v)).collect();
        serde_json::json!({
            "requests": c.requests,
            "records": c.records,
            "points": c.points,
            "sums": sums,
        })
    }
}

#[derive(Clone)]
struct Svc(Arc<State>);

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let req = req.into_inner();
        let mut local: BTreeMap<String, u64> = BTreeMap::new();
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let label = self.0.label(&r.attributes);
                    self.0
                        .show(&label, &r.event_name, r.body.as_ref(), &r.attributes);
                    let key = format!("logs {} {label}", r.event_name);
                    *local.entry(key).or_default() += 1;
                }
            }
        }
        let mut c = self.0.counts();
        c.requests += 1;
        for (k, n) in local {
            *c.records.entry(k).or_default() += n;
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = req.into_inner();
        let mut local: BTreeMap<String, u64> = BTreeMap::new();
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let label = self.0.label(&s.attributes);
                    self.0.show(&label, &s.name, None, &s.attributes);
                    let mut key = format!("traces {} {label}", s.name);
                    let failed = s
                        .status
                        .as_ref()
                        .is_some_and(|st| st.code == StatusCode::Error as i32);
                    if failed {
                        let why = str_attr(&s.attributes, "error.type");
                        key.push_str(&format!(" error.type={}", why.as_deref().unwrap_or("?")));
                    }
                    *local.entry(key).or_default() += 1;
                }
            }
        }
        let mut c = self.0.counts();
        c.requests += 1;
        for (k, n) in local {
            *c.records.entry(k).or_default() += n;
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn point_key(name: &str, attrs: &[KeyValue]) -> String {
    let mut kv: Vec<String> = attrs
        .iter()
        .filter_map(|a| {
            let v = match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                _ => return None,
            };
            Some(format!("{}={v}", a.key))
        })
        .collect();
    kv.sort();
    format!("{name}{{{}}}", kv.join(","))
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let req = req.into_inner();
        let mut c = self.0.counts();
        c.requests += 1;
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let (n, sum_points) = match &m.data {
                        Some(Data::Sum(s)) => (s.data_points.len(), Some(&s.data_points)),
                        Some(Data::Gauge(g)) => (g.data_points.len(), None),
                        Some(Data::Histogram(h)) => (h.data_points.len(), None),
                        Some(Data::ExponentialHistogram(h)) => (h.data_points.len(), None),
                        Some(Data::Summary(s)) => (s.data_points.len(), None),
                        None => (0, None),
                    };
                    *c.points.entry(m.name.clone()).or_default() += n as u64;
                    for p in sum_points.into_iter().flatten() {
                        let v = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => continue,
                        };
                        let e = c
                            .sums
                            .entry(point_key(&m.name, &p.attributes))
                            .or_insert((0, 0.0));
                        if p.time_unix_nano >= e.0 {
                            *e = (p.time_unix_nano, v);
                        }
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

struct Args {
    grpc: SocketAddr,
    control: SocketAddr,
    matchers: Vec<(String, String)>,
    tags: Vec<String>,
    show_other: usize,
}

fn parse_args() -> Result<Args> {
    let mut grpc = None;
    let mut control = None;
    let mut matchers = Vec::new();
    let mut tags = Vec::new();
    let mut show_other = 0;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--grpc" => grpc = Some(val()?.parse().context("--grpc")?),
            "--control" => control = Some(val()?.parse().context("--control")?),
            "--match" => {
                let v = val()?;
                let (k, x) = v
                    .split_once('=')
                    .with_context(|| format!("--match {v}: want KEY=VALUE"))?;
                matchers.push((k.to_string(), x.to_string()));
            }
            "--tag" => tags.push(val()?),
            "--show-other" => show_other = val()?.parse().context("--show-other")?,
            _ => bail!("unknown argument {a}"),
        }
    }
    Ok(Args {
        grpc: grpc.context("--grpc ADDR is required")?,
        control: control.context("--control ADDR is required")?,
        matchers,
        tags,
        show_other,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let state = Arc::new(State {
        matchers: args.matchers,
        tags: args.tags,
        counts: Mutex::default(),
        show_other: args.show_other.into(),
    });
    let grpc = tokio::net::TcpListener::bind(args.grpc)
        .await
        .with_context(|| format!("bind {}", args.grpc))?;
    let control = tokio::net::TcpListener::bind(args.control)
        .await
        .with_context(|| format!("bind {}", args.control))?;
    let svc = Svc(state.clone());
    let gz = tonic::codec::CompressionEncoding::Gzip;
    let server = tonic::transport::Server::builder()
        .add_service(
            LogsServiceServer::new(svc.clone())
                .accept_compressed(gz)
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(gz)
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            MetricsServiceServer::new(svc)
                .accept_compressed(gz)
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc));
    let st = state.clone();
    let app = axum::Router::new().route(
        "/counts",
        axum::routing::get(move || {
            let st = st.clone();
            async move { st.json().to_string() }
        }),
    );
    let ctl = axum::serve(control, app);
    eprintln!("otlp_count ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        r = server => r.context("gRPC server")?,
        r = ctl => r.context("control server")?,
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    println!("{}", state.json());
    Ok(())
}
