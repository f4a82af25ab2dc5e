//! OTLP over gRPC (tonic).
//!
//! A pre-encoded request goes out as the HTTP/2 body it already is: the
//! queue's chunk holds the gRPC message prefix in front of the request
//! ([`prefix_message`]), and [`GrpcSink::send_framed`] hands that buffer to
//! tonic's channel (connections, TLS, timeouts) as a `Bytes` it owns.
//! tonic's codecs encode into a buffer of their own, which for bytes that
//! are already a request is a copy of every batch (5.7 % of Tapio's CPU at
//! 42k events/s); gzip still goes through tonic, it writes a new buffer
//! anyway.

use super::sink::{Accepted, Encoded, ExportError, Frame, Payload, SinkError};
use crate::config::OtlpSettings;
use crate::telemetry::Signal;
use bytes::{BufMut, Bytes};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceResponse},
    metrics::v1::{metrics_service_client::MetricsServiceClient, ExportMetricsServiceResponse},
    trace::v1::{trace_service_client::TraceServiceClient, ExportTraceServiceResponse},
};
use std::{marker::PhantomData, sync::Arc, time::Duration};
use tonic::{
    client::GrpcService,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::{
        self,
        header::{HeaderValue, CONTENT_TYPE, TE},
        uri::PathAndQuery,
        HeaderMap,
    },
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Code, Status,
};

#[derive(Clone)]
pub struct GrpcSink {
    endpoint: String,
    /// One HTTP/2 connection per request in flight (`num_consumers`), taken
    /// in turn: a collector's HTTP/2 receive window (64 KiB by default, per
    /// connection) held the requests sharing one connection to a window's
    /// worth of bytes per round trip, which capped a busy node's export
    /// below what Tapio produced while every process idled.
    channels: Arc<[Channel]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    metadata: MetadataMap,
    /// The headers of a request sent without tonic's codec: gRPC's, the
    /// deadline and the configured ones, as tonic would have set them.
    headers: Arc<HeaderMap>,
    timeout: Duration,
    gzip: bool,
}

/// Connects a channel to a collector's Unix socket instead of TCP. Over
/// loopback TCP the sender's `writev` also runs the receiver's TCP/IP
/// input path (loopback delivers in the sender's context): 5.6 µs of
/// system time per 16 KiB write here, against 1.9 µs over a Unix socket
/// (`bench/socket_send.py`; `writev` was 30 % of Tapio's CPU under the
/// sustained load).
#[derive(Clone)]
struct UnixConnector(Arc<str>);

impl tonic::codegen::Service<http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let s = tokio::net::UnixStream::connect(&*path).await?;
            Ok(hyper_util::rt::TokioIo::new(s))
        })
    }
}

fn read(path: &str) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|e| SinkError::Tls(format!("{path}: {e}")))
}

impl GrpcSink {
    pub fn new(o: &OtlpSettings) -> Result<Self, SinkError> {
        let bad = |m: String| SinkError::Endpoint {
            endpoint: o.endpoint.clone(),
            message: m,
        };
        let socket = crate::config::unix_socket_path(&o.endpoint);
        // A Unix socket's requests still need an authority: `localhost`, as
        // gRPC's own clients send for `unix:` targets.
        let uri = match socket {
            Some(_) => "http://localhost".to_string(),
            None => o.endpoint.clone(),
        };
        let mut ep = Endpoint::from_shared(uri)
            .map_err(|e| bad(e.to_string()))?
            .timeout(o.timeout)
            .connect_timeout(o.timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true);
        if o.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &o.tls.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(c), Some(k)) = (&o.tls.cert_file, &o.tls.key_file) {
                tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
            }
            if let Some(name) = &o.tls.server_name {
                tls = tls.domain_name(name.clone());
            }
            ep = ep
                .tls_config(tls)
                .map_err(|e| SinkError::Tls(e.to_string()))?;
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in &o.headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| SinkError::Header(k.clone()))?;
            let val =
                MetadataValue::try_from(v.as_str()).map_err(|_| SinkError::Header(k.clone()))?;
            metadata.insert(key, val);
        }
        let mut headers = metadata.clone().into_headers();
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-timeout",
            HeaderValue::try_from(grpc_timeout(o.timeout)).map_err(|e| bad(e.to_string()))?,
        );
        Ok(Self {
            endpoint: o.endpoint.clone(),
            // Lazy: Tapio starts (and keeps its probes running) while the
            // collector is still coming up.
            channels: (0..o.num_consumers.max(1))
                .map(|_| match socket {
                    Some(path) => ep.connect_with_connector_lazy(UnixConnector(path.into())),
                    None => ep.connect_lazy(),
                })
                .collect(),
            next: Arc::default(),
            metadata,
            headers: Arc::new(headers),
            timeout: o.timeout,
            gzip: o.gzip,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next connection in turn.
    fn channel(&self) -> Channel {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.channels[i % self.channels.len()].clone()
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        *r.metadata_mut() = self.metadata.clone();
        r.set_timeout(self.timeout);
        r
    }

    pub async fn send(&self, p: &Payload) -> Result<Accepted, ExportError> {
        let enc = CompressionEncoding::Gzip;
        let rejected = match p {
            Payload::Logs(req) => {
                let mut c = LogsServiceClient::new(self.channel());
                if self.gzip {
                    c = c.send_compressed(enc);
                }
                let resp = c
                    .export(self.request(req.clone()))
                    .await
                    .map_err(classify)?;
                resp.into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_log_records)
            }
            Payload::Traces(req) => {
                let mut c = TraceServiceClient::new(self.channel());
                if self.gzip {
                    c = c.send_compressed(enc);
                }
                let resp = c
                    .export(self.request(req.clone()))
                    .await
                    .map_err(classify)?;
                resp.into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans)
            }
            Payload::Metrics(req) => {
                let mut c = MetricsServiceClient::new(self.channel());
                if self.gzip {
                    c = c.send_compressed(enc);
                }
                let resp = c
                    .export(self.request(req.clone()))
                    .await
                    .map_err(classify)?;
                resp.into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points)
            }
            Payload::Encoded(e) => match e.frame.grpc_at {
                Some(at) if !self.gzip => self.send_framed(e, at).await?,
                _ => self.send_encoded(e).await?,
            },
            Payload::Json(_) => {
                return Err(ExportError::permanent(
                    "an OTLP-JSON request reached the gRPC sink",
                ))
            }
        };
        Ok(Accepted {
            rejected: rejected.max(0) as u64,
        })
    }

    /// A pre-encoded request whose buffer holds it as a gRPC message
    /// (`buf[at..]`): that buffer is the request body, nothing copies it.
    /// The response is read as tonic reads a unary one: a trailers-only
    /// status, else one message and the status in the trailers.
    async fn send_framed(&self, e: &Encoded, at: usize) -> Result<i64, ExportError> {
        let path = match e.signal {
            Signal::Logs => LOGS_EXPORT,
            Signal::Traces => TRACES_EXPORT,
            Signal::Metrics => METRICS_EXPORT,
        };
        let body = Bytes::from_owner(GrpcMessage(e.frame.clone(), at));
        let mut req = http::Request::new(tonic::body::Body::new(Full::new(body)));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from_static(path);
        *req.version_mut() = http::Version::HTTP_2;
        *req.headers_mut() = HeaderMap::clone(&self.headers);
        let mut channel = self.channel();
        // As tonic's generated clients do: a channel that is not ready is an
        // `Unknown` status.
        std::future::poll_fn(|cx| GrpcService::poll_ready(&mut channel, cx))
            .await
            .map_err(|err| classify(Status::unknown(format!("Service was not ready: {err}"))))?;
        let resp = GrpcService::call(&mut channel, req)
            .await
            .map_err(|err| classify(Status::from_error(err.into())))?;
        let status = resp.status();
        if let Some(s) = Status::from_header_map(resp.headers()) {
            // Trailers-only: the status is all there is.
            return if s.code() == Code::Ok {
                Err(classify(Status::internal("Missing response message.")))
            } else {
                Err(classify(s))
            };
        }
        let got = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|err| classify(Status::from_error(err)))?;
        if let Some(s) = grpc_status(got.trailers(), status) {
            return Err(classify(s));
        }
        let body = got.to_bytes();
        let message = unary_message(&body).map_err(classify)?;
        Ok(match e.signal {
            Signal::Logs => decode::<ExportLogsServiceResponse>(message)?
                .partial_success
                .map_or(0, |p| p.rejected_log_records),
            Signal::Traces => decode::<ExportTraceServiceResponse>(message)?
                .partial_success
                .map_or(0, |p| p.rejected_spans),
            Signal::Metrics => decode::<ExportMetricsServiceResponse>(message)?
                .partial_success
                .map_or(0, |p| p.rejected_data_points),
        })
    }

    /// A pre-encoded request through tonic's codec (gzip): it copies the
    /// bytes into its frame (compressed), nothing re-encodes them.
    async fn send_encoded(&self, e: &Encoded) -> Result<i64, ExportError> {
        let mut grpc = tonic::client::Grpc::new(self.channel());
        if self.gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        // As the generated clients do: a channel that is not ready is an
        // `Unknown` status.
        grpc.ready()
            .await
            .map_err(|err| classify(Status::unknown(format!("Service was not ready: {err}"))))?;
        let req = self.request(e.frame.clone());
        Ok(match e.signal {
            Signal::Logs => grpc
                .unary(
                    req,
                    PathAndQuery::from_static(LOGS_EXPORT),
                    RawCodec::<ExportLogsServiceResponse>::default(),
                )
                .await
                .map_err(classify)?
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_log_records),
            Signal::Traces => grpc
                .unary(
                    req,
                    PathAndQuery::from_static(TRACES_EXPORT),
                    RawCodec::<ExportTraceServiceResponse>::default(),
                )
                .await
                .map_err(classify)?
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_spans),
            Signal::Metrics => grpc
                .unary(
                    req,
                    PathAndQuery::from_static(METRICS_EXPORT),
                    RawCodec::<ExportMetricsServiceResponse>::default(),
                )
                .await
                .map_err(classify)?
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_data_points),
        })
    }
}

const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Bytes of the gRPC message prefix: a compression flag and the message's
/// length, big-endian.
pub const MESSAGE_PREFIX: usize = 5;

/// tonic's default limit for a message it decodes; an export response is a
/// few bytes, so a collector sending more is broken or hostile.
const MAX_RESPONSE: usize = 4 << 20;

/// Write the gRPC message prefix (uncompressed) in the `MESSAGE_PREFIX`
/// bytes in front of `buf[at..]`; returns where the message starts, or
/// `None` when there is no room or the request is too large for a prefix.
pub fn prefix_message(buf: &mut [u8], at: usize) -> Option<usize> {
    let len = u32::try_from(buf.len().checked_sub(at)?).ok()?;
    let start = at.checked_sub(MESSAGE_PREFIX)?;
    buf[start] = 0;
    buf[start + 1..at].copy_from_slice(&len.to_be_bytes());
    Some(start)
}

/// A frame's gRPC message, owned by the request body until h2 has sent it.
struct GrpcMessage(Arc<Frame>, usize);

impl AsRef<[u8]> for GrpcMessage {
    fn as_ref(&self) -> &[u8] {
        &self.0.buf[self.1..]
    }
}

/// `grpc-timeout`: the most precise unit whose value has at most 8 digits
/// (the gRPC over HTTP/2 spec's limit), as tonic writes it.
fn grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let units: [(u128, char); 6] = [
        (d.as_nanos(), 'n'),
        (d.as_micros(), 'u'),
        (d.as_millis(), 'm'),
        (u128::from(d.as_secs()), 'S'),
        (u128::from(d.as_secs() / 60), 'M'),
        (u128::from(d.as_secs() / 3600), 'H'),
    ];
    let (v, unit) = units
        .into_iter()
        .find(|(v, _)| *v <= MAX)
        .unwrap_or((MAX, 'H'));
    format!("{v}{unit}")
}

/// The call's status once the body has ended: from the trailers, else
/// inferred from the HTTP status as the gRPC spec's mapping says
/// (<https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>);
/// `None` for OK.
fn grpc_status(trailers: Option<&HeaderMap>, http: http::StatusCode) -> Option<Status> {
    if let Some(s) = trailers.and_then(Status::from_header_map) {
        return (s.code() != Code::Ok).then_some(s);
    }
    let code = match http {
        http::StatusCode::BAD_REQUEST => Code::Internal,
        http::StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        http::StatusCode::FORBIDDEN => Code::PermissionDenied,
        http::StatusCode::NOT_FOUND => Code::Unimplemented,
        http::StatusCode::TOO_MANY_REQUESTS
        | http::StatusCode::BAD_GATEWAY
        | http::StatusCode::SERVICE_UNAVAILABLE
        | http::StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        // A 200 that ended without a status: truncated by something on
        // the way, as far as anyone can tell (grpc-go and tonic agree).
        _ => Code::Unknown,
    };
    Some(Status::new(
        code,
        format!(
            "grpc-status missing, mapped from HTTP status {}",
            http.as_u16()
        ),
    ))
}

/// The one message of a unary response body: its prefix checked, the
/// message uncompressed (Tapio does not ask for compressed responses).
fn unary_message(body: &[u8]) -> Result<&[u8], Status> {
    let Some((head, rest)) = body.split_first_chunk::<MESSAGE_PREFIX>() else {
        return Err(Status::internal("Missing response message."));
    };
    if head[0] != 0 {
        return Err(Status::internal(
            "a compressed response, which Tapio did not ask for",
        ));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    rest.get(..len)
        .ok_or_else(|| Status::internal("response message shorter than its prefix says"))
}

fn decode<R: prost::Message + Default>(b: &[u8]) -> Result<R, ExportError> {
    R::decode(b).map_err(|e| classify(Status::internal(e.to_string())))
}

/// Sends pre-encoded request bytes; decodes the response with prost.
struct RawCodec<R>(PhantomData<R>);

impl<R> Default for RawCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for RawCodec<R> {
    type Encode = Arc<Frame>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Arc<Frame>;
    type Error = Status;

    fn encode(&mut self, item: Arc<Frame>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let body = &item.buf[item.at..];
        // Grown once to the request's size: tonic's buffer starts at 8 KiB
        // and doubling it copied each batch several times over.
        dst.reserve(body.len());
        dst.put_slice(body);
        Ok(())
    }
}

struct ProstDecoder<R>(PhantomData<R>);

impl<R: prost::Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// OTLP/gRPC: these codes are retryable, the rest are not.
fn classify(s: Status) -> ExportError {
    let msg = format!("gRPC {:?}: {}", s.code(), s.message());
    match s.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::ResourceExhausted => ExportError::retryable(msg),
        _ => ExportError::permanent(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, RetryConfig, TlsConfig};
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    };
    use prost::Message;
    use std::time::Instant;
    use tapio_integration::{Answer, Receiver};

    fn sink(endpoint: String, gzip: bool) -> GrpcSink {
        GrpcSink::new(&OtlpSettings {
            protocol: Protocol::Grpc,
            endpoint,
            headers: vec![("X-Tenant".into(), "team-a".into())],
            gzip,
            timeout: Duration::from_millis(2500),
            tls: TlsConfig::default(),
            retry: RetryConfig::default(),
            queue_size: 16,
            queue_bytes: 1 << 20,
            num_consumers: 2,
        })
        .expect("sink")
    }

    fn request(n: usize) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: (0..n)
                        .map(|i| LogRecord {
                            time_unix_nano: i as u64,
                            event_name: format!("e{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The request as the queue frames it: headroom, then the message, the
    /// gRPC prefix written in front.
    fn encoded(req: &ExportLogsServiceRequest) -> Encoded {
        let room = 40;
        let mut buf = vec![0xAA; room];
        req.encode(&mut buf).expect("encode");
        let grpc_at = prefix_message(&mut buf, room);
        assert_eq!(grpc_at, Some(room - MESSAGE_PREFIX));
        Encoded {
            signal: Signal::Logs,
            frame: Arc::new(Frame {
                buf,
                at: room,
                grpc_at,
            }),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_framed_request_arrives_as_sent_with_headers_and_deadline() {
        let rx = Receiver::start();
        let rt = rt();
        let _in = rt.enter();
        for (gzip, n) in [(false, 3), (true, 2), (false, 2000)] {
            let s = sink(rx.grpc_endpoint(), gzip);
            let req = request(n);
            let e = encoded(&req);
            let got = rt
                .block_on(s.send(&Payload::Encoded(e.clone())))
                .expect("accepted");
            // The body let go of the buffer, so the queue gets it back.
            let released = Instant::now() + Duration::from_secs(2);
            while Arc::strong_count(&e.frame) > 1 && Instant::now() < released {
                rt.block_on(tokio::time::sleep(Duration::from_millis(5)));
            }
            assert_eq!(Arc::strong_count(&e.frame), 1, "gzip {gzip}, {n} records");
            assert_eq!(got, Accepted { rejected: 0 });
            assert_eq!(
                rx.received().logs.last(),
                Some(&req),
                "gzip {gzip}, {n} records"
            );
        }
        let r = rx.received();
        assert_eq!(r.logs.len(), 3);
        let seen = |k: &str| r.headers.iter().filter(|(h, _)| h == k).count();
        assert_eq!(seen("x-tenant"), 3, "{:?}", r.headers);
        assert_eq!(seen("grpc-timeout"), 3);
        assert!(r
            .headers
            .iter()
            .any(|(h, v)| h == "grpc-timeout" && v == "2500000u"));
    }

    #[test]
    fn statuses_and_partial_success_are_read_as_tonic_reads_them() {
        let rx = Receiver::start();
        let rt = rt();
        let _in = rt.enter();
        for gzip in [false, true] {
            let s = sink(rx.grpc_endpoint(), gzip);
            let send = || rt.block_on(s.send(&Payload::Encoded(encoded(&request(4)))));
            rx.answer(Answer::Reject(3));
            assert_eq!(send().expect("accepted"), Accepted { rejected: 3 });
            rx.answer(Answer::Fail(Code::Unavailable, "later".into()));
            let e = send().expect_err("unavailable");
            assert!(e.retryable, "{e:?}");
            assert_eq!(e.message, "gRPC Unavailable: later");
            rx.answer(Answer::Fail(Code::InvalidArgument, "bad".into()));
            let e = send().expect_err("invalid");
            assert!(!e.retryable);
            assert_eq!(e.message, "gRPC InvalidArgument: bad");
            rx.answer(Answer::Accept);
        }
    }

    #[test]
    fn a_dead_collector_is_retryable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let rt = rt();
        let _in = rt.enter();
        let s = sink(format!("http://127.0.0.1:{port}"), false);
        let e = rt
            .block_on(s.send(&Payload::Encoded(encoded(&request(1)))))
            .expect_err("nobody listens");
        assert!(e.retryable, "{e:?}");
    }

    #[test]
    fn deadlines_are_written_as_tonic_writes_them() {
        for d in [
            Duration::from_nanos(1),
            Duration::from_micros(99_999),
            Duration::from_millis(100),
            Duration::from_millis(99_999_999),
            Duration::from_secs(100_000),
            Duration::from_secs(99_999_999 * 60 + 59),
            Duration::from_secs(10_000_000_000),
        ] {
            let mut r = tonic::Request::new(());
            r.set_timeout(d);
            let want = r
                .metadata()
                .get("grpc-timeout")
                .expect("set")
                .to_str()
                .expect("ascii");
            assert_eq!(grpc_timeout(d), want, "{d:?}");
        }
    }

    #[test]
    fn statuses_without_trailers_follow_the_http_mapping() {
        let ok = http::StatusCode::OK;
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(grpc_status(Some(&t), ok).is_none());
        t.insert("grpc-status", HeaderValue::from_static("8"));
        assert_eq!(
            grpc_status(Some(&t), ok).map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        for (http, code) in [
            (200, Code::Unknown),
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
        ] {
            let h = http::StatusCode::from_u16(http).expect("status");
            assert_eq!(grpc_status(None, h).map(|s| s.code()), Some(code), "{http}");
        }
    }

    #[test]
    fn response_messages_are_checked_against_their_prefix() {
        assert!(unary_message(&[]).is_err());
        assert!(unary_message(&[0, 0, 0, 0]).is_err());
        assert_eq!(unary_message(&[0, 0, 0, 0, 0]).ok(), Some(&[][..]));
        assert_eq!(
            unary_message(&[0, 0, 0, 0, 2, 7, 8, 9]).ok(),
            Some(&[7, 8][..])
        );
        assert!(unary_message(&[0, 0, 0, 0, 3, 7, 8]).is_err());
        assert!(unary_message(&[1, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn a_prefix_needs_room() {
        let mut b = vec![0u8; 10];
        assert_eq!(prefix_message(&mut b, 4), None);
        assert_eq!(prefix_message(&mut b, 5), Some(0));
        assert_eq!(b[..5], [0, 0, 0, 0, 5]);
        assert_eq!(prefix_message(&mut b, 11), None);
    }
}
