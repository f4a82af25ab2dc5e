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
//! "background" of a run was. `--grpc-unix PATH` listens on a Unix socket
//! instead of `--grpc`'s TCP address (a collector's `transport: unix`).
//!
//!   otlp_count --grpc 127.0.0.1:4317 --control 127.0.0.1:4399 \
//!       --match process.executable.path=/tmp/x --match server.port=5300 \
//!       --tag tapio.connection.direction

mod lean;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        metrics_service_server::{MetricsService, MetricsServiceServer},
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    common::v1::{any_value::Value, AnyValue, KeyValue},
    metrics::v1::{metric::Data, number_data_point},
    trace::v1::status::StatusCode,
};
use prost::Message;
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

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
    /// `--match KEY=VALUE`, with VALUE as the integer it spells, if any.
    matchers: Vec<(String, String, Option<i64>)>,
    tags: Vec<String>,
    counts: Mutex<Counts>,
    /// How many more unmatched records to print (`--show-other`).
    show_other: std::sync::atomic::AtomicUsize,
}

/// The first value of attribute `key`.
fn value_of<'a>(kvs: &'a [lean::KeyValue], key: &str) -> Option<&'a lean::Value> {
    kvs.iter()
        .find(|a| a.key.as_ref() == key.as_bytes())
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

impl State {
    /// Appends the record's label to `out`: the first matcher its attributes
    /// satisfy (`other` when none does), then `|KEY=value` per tag it
    /// carries. Returns whether a matcher did.
    fn label(&self, kvs: &[lean::KeyValue], out: &mut String) -> bool {
        let hit = self
            .matchers
            .iter()
            .find(|(k, v, int)| match value_of(kvs, k) {
                Some(lean::Value::Str(s)) => s.as_ref() == v.as_bytes(),
                Some(lean::Value::Int(i)) => Some(*i) == *int,
                None => false,
            });
        match hit {
            Some((k, v, _)) => {
                let _ = write!(out, "{k}={v}");
            }
            None => out.push_str("other"),
        }
        for k in &self.tags {
            match value_of(kvs, k) {
                Some(lean::Value::Str(s)) => {
                    let _ = write!(out, "|{k}={}", String::from_utf8_lossy(s));
                }
                Some(lean::Value::Int(i)) => {
                    let _ = write!(out, "|{k}={i}");
                }
                None => {}
            }
        }
        hit.is_some()
    }

    /// Whether `--show-other` still allows printing an unmatched record.
    fn take_show(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.show_other
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Print an unmatched record, its attributes and body decoded whole.
    fn show(&self, name: &str, body: Option<&Bytes>, attrs: &[Bytes]) {
        let kv: Vec<String> = attrs
            .iter()
            .filter_map(|b| KeyValue::decode(b.clone()).ok())
            .map(|a| {
                format!(
                    "{}={:?}",
                    a.key,
                    a.value.as_ref().and_then(|v| v.value.as_ref())
                )
            })
            .collect();
        let body = body
            .and_then(|b| AnyValue::decode(b.clone()).ok())
            .and_then(|b| b.value);
        eprintln!("other: {name} body={body:?} {}", kv.join(" "));
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, local: HashMap<String, u64>) {
        let mut c = self.counts();
        c.requests += 1;
        for (k, n) in local {
            *c.records.entry(k).or_default() += n;
        }
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

    /// Count every record of an export request under the key `one` writes
    /// for it (given the record's bytes, a scratch for its attributes and
    /// the cleared key).
    fn count_records(
        &self,
        req: Bytes,
        mut one: impl FnMut(Bytes, &mut Vec<lean::KeyValue>, &mut String) -> Result<(), tonic::Status>,
    ) -> Result<(), tonic::Status> {
        let mut local = HashMap::new();
        let mut kvs = Vec::new();
        let mut key = String::new();
        for res in lean::Request::decode(req).map_err(bad)?.resources {
            for scope in res.scopes {
                for rec in scope.records {
                    key.clear();
                    one(rec, &mut kvs, &mut key)?;
                    bump(&mut local, &key);
                }
            }
        }
        self.add(local);
        Ok(())
    }

    /// Count an ExportLogsServiceRequest: `logs {event_name} {label}`.
    fn count_logs(&self, req: Bytes) -> Result<(), tonic::Status> {
        self.count_records(req, |rec, kvs, key| {
            let r = lean::LogRecord::decode(rec).map_err(bad)?;
            decode_attrs(&r.attributes, kvs)?;
            let name = String::from_utf8_lossy(&r.event_name);
            let _ = write!(key, "logs {name} ");
            if !self.label(kvs, key) && self.take_show() {
                self.show(&name, r.body.as_ref(), &r.attributes);
            }
            Ok(())
        })
    }

    /// Count an ExportTraceServiceRequest: `traces {name} {label}`, and
    /// ` error.type=…` for a failed span.
    fn count_spans(&self, req: Bytes) -> Result<(), tonic::Status> {
        self.count_records(req, |rec, kvs, key| {
            let s = lean::Span::decode(rec).map_err(bad)?;
            decode_attrs(&s.attributes, kvs)?;
            let name = String::from_utf8_lossy(&s.name);
            let _ = write!(key, "traces {name} ");
            if !self.label(kvs, key) && self.take_show() {
                self.show(&name, None, &s.attributes);
            }
            let failed = s
                .status
                .as_ref()
                .is_some_and(|st| st.code == StatusCode::Error as i32);
            if failed {
                match value_of(kvs, "error.type") {
                    Some(lean::Value::Str(why)) => {
                        let _ = write!(key, " error.type={}", String::from_utf8_lossy(why));
                    }
                    _ => key.push_str(" error.type=?"),
                }
            }
            Ok(())
        })
    }
}

fn bad(e: prost::DecodeError) -> tonic::Status {
    tonic::Status::invalid_argument(e.to_string())
}

/// A record's attributes, decoded into `out` (reused across records).
fn decode_attrs(raw: &[Bytes], out: &mut Vec<lean::KeyValue>) -> Result<(), tonic::Status> {
    out.clear();
    for b in raw {
        out.push(lean::KeyValue::decode(b.clone()).map_err(bad)?);
    }
    Ok(())
}

/// One more record under `key`, allocating the key only when it is new.
fn bump(local: &mut HashMap<String, u64>, key: &str) {
    match local.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            local.insert(key.to_string(), 1);
        }
    }
}

#[derive(Clone)]
struct Svc(Arc<State>);

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
    grpc: Grpc,
    control: SocketAddr,
    matchers: Vec<(String, String, Option<i64>)>,
    tags: Vec<String>,
    show_other: usize,
}

/// Where the gRPC server listens: TCP, or a Unix socket (a collector's
/// `transport: unix`).
enum Grpc {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
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
            "--grpc" => grpc = Some(Grpc::Tcp(val()?.parse().context("--grpc")?)),
            "--grpc-unix" => grpc = Some(Grpc::Unix(val()?.into())),
            "--control" => control = Some(val()?.parse().context("--control")?),
            "--match" => {
                let v = val()?;
                let (k, x) = v
                    .split_once('=')
                    .with_context(|| format!("--match {v}: want KEY=VALUE"))?;
                // An integer attribute matches when it prints as VALUE.
                let int = x.parse::<i64>().ok().filter(|i| i.to_string() == x);
                matchers.push((k.to_string(), x.to_string(), int));
            }
            "--tag" => tags.push(val()?),
            "--show-other" => show_other = val()?.parse().context("--show-other")?,
            _ => bail!("unknown argument {a}"),
        }
    }
    Ok(Args {
        grpc: grpc.context("--grpc ADDR or --grpc-unix PATH is required")?,
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
    let control = tokio::net::TcpListener::bind(args.control)
        .await
        .with_context(|| format!("bind {}", args.control))?;
    let svc = Svc(state.clone());
    let gz = tonic::codec::CompressionEncoding::Gzip;
    let st = state.clone();
    let logs: lean::Handler = Arc::new(move |req| st.count_logs(req));
    let st = state.clone();
    let spans: lean::Handler = Arc::new(move |req| st.count_spans(req));
    let router = tonic::transport::Server::builder()
        .add_service(lean::LeanService::<lean::Logs>::new(logs, MAX_MESSAGE))
        .add_service(lean::LeanService::<lean::Traces>::new(spans, MAX_MESSAGE))
        .add_service(
            MetricsServiceServer::new(svc)
                .accept_compressed(gz)
                .max_decoding_message_size(MAX_MESSAGE),
        );
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = match &args.grpc {
        Grpc::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind {addr}"))?;
            Box::pin(router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)))
        }
        Grpc::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("bind {}", path.display()))?;
            Box::pin(router.serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(l)))
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span, Status},
    };

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn state() -> State {
        State {
            matchers: vec![
                ("process.executable.path".into(), "/tmp/x".into(), None),
                ("server.port".into(), "5300".into(), Some(5300)),
            ],
            tags: vec!["tapio.connection.direction".into()],
            counts: Mutex::default(),
            show_other: 0.into(),
        }
    }

    /// The labels read from a request's bytes are the ones the whole
    /// decode gave: the first matcher in order, string and integer values,
    /// tags, failed spans' error.type, and the rest as `other`.
    #[test]
    fn records_are_labelled_from_their_bytes() {
        let port = |p| kv("server.port", Value::IntValue(p));
        let failed = Some(Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        });
        let spans = vec![
            Span {
                name: "dns.lookup".into(),
                attributes: vec![
                    port(5300),
                    kv("error.type", Value::StringValue("timeout".into())),
                ],
                status: failed.clone(),
                ..Default::default()
            },
            Span {
                name: "dns.lookup".into(),
                attributes: vec![port(53000)],
                status: failed,
                ..Default::default()
            },
            Span {
                name: "connect".into(),
                attributes: vec![
                    port(5300),
                    kv(
                        "process.executable.path",
                        Value::StringValue("/tmp/x".into()),
                    ),
                    kv(
                        "tapio.connection.direction",
                        Value::StringValue("outbound".into()),
                    ),
                ],
                ..Default::default()
            },
            Span {
                name: "connect".into(),
                attributes: vec![kv("server.port", Value::StringValue("5300".into()))],
                ..Default::default()
            },
        ];
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            event_name: "process.exec".into(),
                            body: Some(AnyValue {
                                value: Some(Value::StringValue("x".into())),
                            }),
                            attributes: vec![kv(
                                "process.executable.path",
                                Value::StringValue("/tmp/x".into()),
                            )],
                            ..Default::default()
                        };
                        2
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let st = state();
        st.count_spans(traces.encode_to_vec().into()).unwrap();
        st.count_logs(logs.encode_to_vec().into()).unwrap();
        let got: Vec<(String, u64)> = st.counts().records.clone().into_iter().collect();
        let want = [
            ("logs process.exec process.executable.path=/tmp/x", 2),
            (
                "traces connect process.executable.path=/tmp/x|tapio.connection.direction=outbound",
                1,
            ),
            ("traces connect server.port=5300", 1),
            ("traces dns.lookup other error.type=?", 1),
            ("traces dns.lookup server.port=5300 error.type=timeout", 1),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(got, want);
        assert_eq!(st.counts().requests, 2);
        assert!(st
            .count_logs(Bytes::from_static(&[0x0a, 0x05, 0x12]))
            .is_err());
    }
}
