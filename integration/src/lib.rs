//! Harness for Tapio's integration tests: a real OTLP receiver (gRPC and
//! HTTP) in-process, a real collector (`rotel`) on loopback, and the real
//! `tapio` binary as a child process. Tests assert on what arrived.
//!
//! Test functions panic with a message rather than return errors, so a
//! failure shows where it happened.

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            logs_service_server::{LogsService, LogsServiceServer},
            ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
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
    common::v1::{any_value::Value, KeyValue},
    logs::v1::LogRecord,
    metrics::v1::{metric::Data, number_data_point, Metric},
    resource::v1::Resource,
    trace::v1::Span,
};
use prost::Message;
use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// True when the test may go on with root and BPF. Under `CI=true` a
/// missing privilege is a failure, never a skip.
pub fn privileged_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    if root && btf {
        return true;
    }
    let why = if root { "no kernel BTF" } else { "not root" };
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: needs root and BPF but {why}; CI must run privileged tests for real");
    }
    eprintln!("SKIP {test}: needs root and BPF ({why})");
    false
}

/// Everything a receiver got.
#[derive(Default, Debug, Clone)]
pub struct Received {
    pub logs: Vec<ExportLogsServiceRequest>,
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub grpc_requests: usize,
    pub http_requests: usize,
    /// Header values seen (lower-case names), for header tests.
    pub headers: Vec<(String, String)>,
    /// What the gRPC logs service answers.
    pub answer: Answer,
}

/// How the gRPC logs service answers an export (tests of a client's status
/// handling); the other services always accept.
#[derive(Default, Debug, Clone)]
pub enum Answer {
    /// Accepted, nothing rejected.
    #[default]
    Accept,
    /// Accepted with this many records rejected (OTLP partial success).
    Reject(i64),
    /// Refused with this status; the request is not kept.
    Fail(tonic::Code, String),
}

type Store = Arc<Mutex<Received>>;

#[derive(Clone)]
struct Grpc(Store);

fn note_headers(store: &Store, md: &tonic::metadata::MetadataMap) {
    let mut s = store.lock().unwrap();
    s.grpc_requests += 1;
    for kv in md.iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
            s.headers
                .push((k.as_str().to_string(), v.to_str().unwrap_or("").to_string()));
        }
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        note_headers(&self.0, req.metadata());
        let mut s = self.0.lock().unwrap();
        let rejected = match &s.answer {
            Answer::Accept => 0,
            Answer::Reject(n) => *n,
            Answer::Fail(code, msg) => return Err(tonic::Status::new(*code, msg.clone())),
        };
        s.logs.push(req.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: "rejected by the test".into(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        note_headers(&self.0, req.metadata());
        self.0.lock().unwrap().traces.push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        note_headers(&self.0, req.metadata());
        self.0.lock().unwrap().metrics.push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn gunzip_if(headers: &axum::http::HeaderMap, body: &[u8]) -> Vec<u8> {
    let gz = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gz {
        return body.to_vec();
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("valid gzip body");
    out
}

async fn http_export(
    axum::extract::State(store): axum::extract::State<Store>,
    axum::extract::Path(signal): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    let body = gunzip_if(&headers, &body);
    let mut s = store.lock().unwrap();
    s.http_requests += 1;
    for (k, v) in &headers {
        s.headers
            .push((k.as_str().to_string(), v.to_str().unwrap_or("").to_string()));
    }
    let ok = match signal.as_str() {
        "logs" => ExportLogsServiceRequest::decode(body.as_slice())
            .map(|r| s.logs.push(r))
            .is_ok(),
        "traces" => ExportTraceServiceRequest::decode(body.as_slice())
            .map(|r| s.traces.push(r))
            .is_ok(),
        "metrics" => ExportMetricsServiceRequest::decode(body.as_slice())
            .map(|r| s.metrics.push(r))
            .is_ok(),
        _ => false,
    };
    if ok {
        (axum::http::StatusCode::OK, Vec::new())
    } else {
        (axum::http::StatusCode::BAD_REQUEST, Vec::new())
    }
}

/// An OTLP receiver (gRPC and HTTP/protobuf) on loopback, in-process.
pub struct Receiver {
    rt: tokio::runtime::Runtime,
    store: Store,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The Unix socket the gRPC receiver listens on instead of `grpc_addr`
    /// ([`Receiver::start_unix`]).
    pub grpc_socket: Option<std::path::PathBuf>,
    stop: Option<(oneshot::Sender<()>, oneshot::Sender<()>)>,
}

/// Where the gRPC receiver listens.
enum GrpcListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, std::path::PathBuf),
}

impl Receiver {
    /// Start on free loopback ports.
    pub fn start() -> Self {
        Self::start_on(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
    }

    /// Start on the given addresses (to restart on the same ports).
    pub fn start_on(grpc: SocketAddr, http: SocketAddr) -> Self {
        Self::start_with(grpc, http, None)
    }

    /// Start with the gRPC receiver behind TLS (and mutual TLS when the
    /// config has a client CA).
    pub fn start_tls(tls: tonic::transport::ServerTlsConfig) -> Self {
        Self::start_with(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            Some(tls),
        )
    }

    /// Start on free loopback ports of the network namespace `netns`
    /// (for a Tapio that runs inside it: its loopback is not ours).
    pub fn start_in_netns(netns: &str) -> Self {
        let path = format!("/run/netns/{netns}");
        // setns(2) moves only the calling thread; sockets keep the
        // namespace they were created in after the thread is gone.
        let (g, h) = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a valid namespace fd, for this thread only.
            let rc = unsafe {
                use std::os::fd::AsRawFd;
                libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET)
            };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            let g = std::net::TcpListener::bind("127.0.0.1:0").expect("bind gRPC");
            let h = std::net::TcpListener::bind("127.0.0.1:0").expect("bind HTTP");
            (g, h)
        })
        .join()
        .expect("netns thread");
        Self::start_listeners(GrpcListener::Tcp(g), h, None)
    }

    /// Start with the gRPC receiver on the Unix socket `path` (as a
    /// collector's OTLP receiver with `transport: unix`); HTTP on loopback.
    pub fn start_unix(path: &std::path::Path) -> Self {
        let _ = std::fs::remove_file(path);
        let g = std::os::unix::net::UnixListener::bind(path).expect("bind gRPC socket");
        let h = std::net::TcpListener::bind("127.0.0.1:0").expect("bind HTTP receiver");
        Self::start_listeners(GrpcListener::Unix(g, path.to_path_buf()), h, None)
    }

    /// `unix:///path` of [`Receiver::start_unix`]'s socket.
    pub fn grpc_unix_endpoint(&self) -> String {
        let p = self.grpc_socket.as_ref().expect("started with start_unix");
        format!("unix://{}", p.display())
    }

    fn start_with(
        grpc: SocketAddr,
        http: SocketAddr,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Self {
        let g = std::net::TcpListener::bind(grpc).expect("bind gRPC receiver");
        let h = std::net::TcpListener::bind(http).expect("bind HTTP receiver");
        Self::start_listeners(GrpcListener::Tcp(g), h, tls)
    }

    fn start_listeners(
        g: GrpcListener,
        h: std::net::TcpListener,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let store: Store = Arc::default();
        let (gtx, grx) = oneshot::channel::<()>();
        let (htx, hrx) = oneshot::channel::<()>();
        h.set_nonblocking(true).expect("nonblocking");
        let hl =
            rt.block_on(async { tokio::net::TcpListener::from_std(h).expect("HTTP listener") });
        let http_addr = hl.local_addr().expect("HTTP addr");
        let (grpc_addr, grpc_socket) = match &g {
            GrpcListener::Tcp(l) => (l.local_addr().expect("gRPC addr"), None),
            GrpcListener::Unix(_, p) => (SocketAddr::from(([0, 0, 0, 0], 0)), Some(p.clone())),
        };
        let svc = Grpc(store.clone());
        let gz = tonic::codec::CompressionEncoding::Gzip;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).expect("server TLS config");
        }
        let router = builder
            .add_service(LogsServiceServer::new(svc.clone()).accept_compressed(gz))
            .add_service(TraceServiceServer::new(svc.clone()).accept_compressed(gz))
            .add_service(MetricsServiceServer::new(svc).accept_compressed(gz));
        let stopped = async {
            let _ = grx.await;
        };
        rt.spawn(async move {
            let _ = match g {
                GrpcListener::Tcp(l) => {
                    l.set_nonblocking(true).expect("nonblocking");
                    let l = tokio::net::TcpListener::from_std(l).expect("gRPC listener");
                    router
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(l),
                            stopped,
                        )
                        .await
                }
                GrpcListener::Unix(l, _) => {
                    l.set_nonblocking(true).expect("nonblocking");
                    let l = tokio::net::UnixListener::from_std(l).expect("gRPC socket");
                    router
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::UnixListenerStream::new(l),
                            stopped,
                        )
                        .await
                }
            };
        });
        let app = axum::Router::new()
            .route("/v1/{signal}", axum::routing::post(http_export))
            .with_state(store.clone());
        rt.spawn(async move {
            let _ = axum::serve(hl, app)
                .with_graceful_shutdown(async {
                    let _ = hrx.await;
                })
                .await;
        });
        Self {
            rt,
            store,
            grpc_addr,
            http_addr,
            grpc_socket,
            stop: Some((gtx, htx)),
        }
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// From now on the gRPC logs service answers so.
    pub fn answer(&self, a: Answer) {
        self.store.lock().unwrap().answer = a;
    }

    pub fn received(&self) -> Received {
        self.store.lock().unwrap().clone()
    }

    /// Every log record received so far, with its resource.
    pub fn log_records(&self) -> Vec<(Resource, LogRecord)> {
        let s = self.store.lock().unwrap();
        let mut out = Vec::new();
        for req in &s.logs {
            for rl in &req.resource_logs {
                let res = rl.resource.clone().unwrap_or_default();
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        out.push((res.clone(), r.clone()));
                    }
                }
            }
        }
        out
    }

    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        let s = self.store.lock().unwrap();
        s.traces
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }

    /// Poll until a span satisfies `pred`; on timeout, panic listing the
    /// spans that did arrive (name and attributes), which is what one needs
    /// to see why.
    pub fn wait_for_span(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Span) -> bool,
    ) -> Span {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return s;
            }
            if Instant::now() > end {
                let seen: Vec<String> = self
                    .spans()
                    .iter()
                    .map(|s| {
                        let attrs: Vec<String> = s
                            .attributes
                            .iter()
                            .filter_map(|a| {
                                Some(format!("{}={:?}", a.key, a.value.as_ref()?.value.as_ref()?))
                            })
                            .collect();
                        format!("{} {{{}}}", s.name, attrs.join(", "))
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for a span: {what}; got:\n{}",
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every metric received, in arrival order.
    pub fn metrics(&self) -> Vec<Metric> {
        let s = self.store.lock().unwrap();
        s.metrics
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter().cloned())
            .collect()
    }

    /// Poll until `pred` holds on the log records, or panic after `timeout`.
    pub fn wait_for_logs<F>(
        &self,
        what: &str,
        timeout: Duration,
        pred: F,
    ) -> Vec<(Resource, LogRecord)>
    where
        F: Fn(&[(Resource, LogRecord)]) -> bool,
    {
        let end = Instant::now() + timeout;
        loop {
            let logs = self.log_records();
            if pred(&logs) {
                return logs;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; got {} log records",
                    logs.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll until a metric named `name` has a point whose attributes match
    /// `attrs` and whose value satisfies `pred`; returns that value.
    pub fn wait_for_counter(
        &self,
        name: &str,
        attrs: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(i64) -> bool,
    ) -> i64 {
        let end = Instant::now() + timeout;
        loop {
            let mut last = None;
            for m in self.metrics().iter().filter(|m| m.name == name) {
                if let Some(v) = point_value(m, attrs) {
                    last = Some(v);
                }
            }
            if let Some(v) = last {
                if pred(v) {
                    return v;
                }
            }
            if Instant::now() > end {
                panic!("timed out waiting for {name}{attrs:?}; last value {last:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop serving (connections are refused afterwards).
    pub fn stop(mut self) -> (SocketAddr, SocketAddr) {
        if let Some((g, h)) = self.stop.take() {
            let _ = g.send(());
            let _ = h.send(());
        }
        let addrs = (self.grpc_addr, self.http_addr);
        self.rt.shutdown_timeout(Duration::from_secs(2));
        addrs
    }
}

/// The value of `m`'s data point whose attributes include `attrs`.
pub fn point_value(m: &Metric, attrs: &[(&str, &str)]) -> Option<i64> {
    let matches = |a: &[KeyValue]| {
        attrs
            .iter()
            .all(|(k, v)| str_attr(a, k).as_deref() == Some(*v))
    };
    let points = match &m.data {
        Some(Data::Sum(s)) => &s.data_points,
        Some(Data::Gauge(g)) => &g.data_points,
        _ => return None,
    };
    points
        .iter()
        .find(|p| matches(&p.attributes))
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => Some(i),
            Some(number_data_point::Value::AsDouble(d)) => Some(d as i64),
            None => None,
        })
}

/// A string attribute's value.
pub fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// An integer attribute's value.
pub fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        })
}

/// The `tapio` binary under test, with its stderr captured.
pub struct Tapio {
    child: Child,
    pub stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Tapio {
    /// Start `bin run --config <yaml>` with `env`, and wait for "tapio ready".
    pub fn start(bin: &str, yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(bin, yaml, &[], env)
    }

    /// Like [`Tapio::start`], with extra `run` arguments; `{dir}` in them is
    /// replaced by the temporary directory holding the config (for files
    /// the test writes next to it).
    pub fn start_with_args(
        bin: &str,
        yaml: &str,
        args: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(None, bin, yaml, args, env)
    }

    /// Like [`Tapio::start`], inside the network namespace `netns` (only
    /// the network namespace: mounts and cgroups stay the host's).
    pub fn start_in_netns(netns: &str, bin: &str, yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(Some(netns), bin, yaml, &[], env)
    }

    /// The config file this Tapio was started with (tests rewrite it to
    /// exercise live reload).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("tapio.yaml")
    }

    /// Replace the config file the way editors and ConfigMaps do: write a
    /// new file next to it and rename it over the old one.
    pub fn rewrite_config(&self, yaml: &str) {
        let tmp = self._dir.path().join(".tapio.yaml.new");
        std::fs::write(&tmp, yaml).expect("write new config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    /// Start with `--config path` as given (a file the test laid out, e.g.
    /// a ConfigMap-style symlink); `yaml` is not written.
    pub fn start_with_config_path(bin: &str, path: &std::path::Path) -> Self {
        Self::spawn_at(None, bin, Some(path), "", &[], &[])
    }

    fn spawn(
        netns: Option<&str>,
        bin: &str,
        yaml: &str,
        args: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_at(netns, bin, None, yaml, args, env)
    }

    fn spawn_at(
        netns: Option<&str>,
        bin: &str,
        path: Option<&std::path::Path>,
        yaml: &str,
        args: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let cfg = dir.path().join("tapio.yaml");
                std::fs::write(&cfg, yaml).expect("write config");
                cfg
            }
        };
        let mut cmd = match netns {
            // nsenter execs: the child's pid is Tapio's.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("run").arg("--config").arg(&cfg);
        for (flag, file_text) in args {
            let f = dir.path().join(flag.trim_start_matches('-'));
            std::fs::write(&f, file_text).expect("write argument file");
            cmd.arg(flag).arg(&f);
        }
        // Tests own the environment: nothing from the caller's OTEL_* leaks in.
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (*k, *v)))
            .env("TAPIO_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr piped");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let buf = stderr.clone();
        std::thread::spawn(move || {
            // Bytes, not `lines()`: one line that is not UTF-8 would end
            // `lines()` and with it every later line and the ready signal.
            let mut r = BufReader::new(err_pipe);
            let mut raw = Vec::new();
            while matches!(r.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&raw)
                    .trim_end_matches('\n')
                    .to_string();
                raw.clear();
                if line.contains("tapio ready") {
                    let _ = ready_tx.send(());
                }
                let mut b = buf.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        // stdout is not used by these tests; drain it so it never blocks.
        let out_pipe = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut BufReader::new(out_pipe), &mut std::io::sink());
        });
        let mut t = Self {
            child,
            stderr,
            _dir: dir,
        };
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let code = t.child.try_wait().ok().flatten();
            panic!(
                "tapio did not become ready (exit: {code:?}); stderr:\n{}",
                t.stderr()
            );
        }
        t
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait (at most `limit`) for Tapio to exit on its own; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the stderr thread catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then wait for a clean exit (panics if it is not clean).
    pub fn terminate(mut self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let err = self.stderr();
                assert!(
                    status.success(),
                    "tapio exited with {status}; stderr:\n{err}"
                );
                return err;
            }
            if Instant::now() > end {
                panic!(
                    "tapio did not exit within 20s of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tapio {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The rotel collector (PyPI `rotel`): receives OTLP on loopback and
/// forwards it with its OTLP exporter.
pub struct Rotel {
    child: Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

/// The python3 the tests run, as the interpreter's own path, resolved once.
/// `python3` on PATH may be pyenv's shim, a chain of bash scripts that
/// costs ~0.1 s per start here and 3-4 s in the emulated guests of
/// integration/vm (the interpreter alone: ~1 s there), and the tests start
/// python hundreds of times. The interpreter it resolves to is the same one,
/// with the same packages and the same `python3` name in /proc.
pub fn python3() -> &'static str {
    static PYTHON3: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON3.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".into())
    })
}

/// Path of `rotel-agent`: `$ROTEL_AGENT`, else the PyPI package's.
pub fn rotel_agent() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ROTEL_AGENT") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new(python3())
        .args([
            "-c",
            "import rotel,os;print(os.path.join(os.path.dirname(rotel.__file__),'rotel-agent'))",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.exists().then_some(p)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(addr: SocketAddr, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Rotel {
    /// Start rotel forwarding everything over OTLP/gRPC to `to`.
    pub fn start_forwarding_to(to: &str) -> Self {
        let bin =
            rotel_agent().expect("rotel-agent not found: pip install rotel (the CI script does)");
        let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(bin)
            .args(["start", "--otlp-grpc-endpoint", &grpc_addr.to_string()])
            .args(["--otlp-http-endpoint", &http_addr.to_string()])
            .args(["--exporter", "otlp", "--otlp-exporter-endpoint", to])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rotel-agent");
        let r = Self {
            child,
            grpc_addr,
            http_addr,
        };
        assert!(
            wait_port(grpc_addr, Duration::from_secs(20)),
            "rotel gRPC receiver did not open"
        );
        assert!(
            wait_port(http_addr, Duration::from_secs(20)),
            "rotel HTTP receiver did not open"
        );
        r
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PKI made with the openssl CLI: a CA, a server certificate for
/// 127.0.0.1 and a client certificate, all signed by the CA.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sh = |args: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=tapio-test-ca");
        sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > san.ext");
        for name in ["server", "client"] {
            sh(&format!("openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}"));
            sh(&format!(
                "openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile san.ext"
            ));
        }
        Self { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }

    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(file)).unwrap()
    }

    /// Server TLS requiring a client certificate signed by the CA.
    pub fn mutual_tls_server(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                self.read("server.pem"),
                self.read("server.key"),
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(self.read("ca.pem")))
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A network namespace made by the test, removed on drop (even on panic).
pub struct NetNs {
    pub name: String,
}

/// Run a command, panicking with its stderr when it fails.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip -n {name} link set lo up"));
        Self {
            name: name.to_string(),
        }
    }

    /// `ip netns exec <ns> <cmd…>` as a Command (ip execs, so the child's
    /// pid is the command's pid).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair: `a` 198.18.0.1/24 + 2001:db8::1/64,
/// `b` 198.18.0.2/24 + 2001:db8::2/64. Test traffic never leaves them.
pub struct NsPair {
    pub a: NetNs,
    pub b: NetNs,
}

impl NsPair {
    pub fn new(tag: &str) -> Self {
        let a = NetNs::new(&format!("tapio-{tag}-a"));
        let b = NetNs::new(&format!("tapio-{tag}-b"));
        let (va, vb) = (format!("tv{tag}a"), format!("tv{tag}b"));
        sh(&format!(
            "ip -n {} link add {va} type veth peer name {vb} netns {}",
            a.name, b.name
        ));
        for (ns, dev, v4, v6) in [
            (&a, &va, "198.18.0.1/24", "2001:db8::1/64"),
            (&b, &vb, "198.18.0.2/24", "2001:db8::2/64"),
        ] {
            sh(&format!("ip -n {} addr add {v4} dev {dev}", ns.name));
            sh(&format!("ip -n {} addr add {v6} dev {dev} nodad", ns.name));
            sh(&format!("ip -n {} link set {dev} up", ns.name));
        }
        Self { a, b }
    }

    /// Name of `a`'s end of the veth.
    pub fn a_dev(&self) -> String {
        let tag = self
            .a
            .name
            .trim_start_matches("tapio-")
            .trim_end_matches("-a");
        format!("tv{tag}a")
    }
}

/// A dnsmasq in a test namespace, killed on drop.
pub struct Dnsmasq(Child);

impl Dnsmasq {
    /// Serve on `listen` (comma-separated addresses) in `ns`, with no
    /// upstream and only the records `extra` gives (`--host-record=…`,
    /// `--cname=…`, `--local=…`).
    pub fn start(ns: &NetNs, listen: &str, extra: &[&str]) -> Self {
        let child = ns
            .command("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--listen-address={listen}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        Self(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
