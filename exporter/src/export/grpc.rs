//! OTLP over gRPC (tonic).

use super::sink::{Accepted, Encoded, ExportError, Frame, Payload, SinkError};
use crate::config::OtlpSettings;
use crate::telemetry::Signal;
use bytes::BufMut;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceResponse},
    metrics::v1::{metrics_service_client::MetricsServiceClient, ExportMetricsServiceResponse},
    trace::v1::{trace_service_client::TraceServiceClient, ExportTraceServiceResponse},
};
use std::{marker::PhantomData, sync::Arc, time::Duration};
use tonic::{
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
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
    timeout: Duration,
    gzip: bool,
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
        let mut ep = Endpoint::from_shared(o.endpoint.clone())
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
        Ok(Self {
            endpoint: o.endpoint.clone(),
            // Lazy: Tapio starts (and keeps its probes running) while the
            // collector is still coming up.
            channels: (0..o.num_consumers.max(1))
                .map(|_| ep.connect_lazy())
                .collect(),
            next: Arc::default(),
            metadata,
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
            Payload::Encoded(e) => self.send_encoded(e).await?,
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

    /// A pre-encoded request, sent as it is: the codec copies its bytes into
    /// the gRPC frame, nothing re-encodes them.
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
