//! Where export requests go: OTLP gRPC, OTLP HTTP, or OTLP-JSON on stdout.

use super::{grpc::GrpcSink, http::HttpSink, stdout::StdoutSink};
use crate::config::{Protocol, SinkSettings};
use crate::telemetry::Signal;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use std::sync::Arc;

/// One export request.
#[derive(Debug, Clone)]
pub enum Payload {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    /// A request already encoded as protobuf (records written by the
    /// probes' direct encoders); sinks send its bytes as they are.
    Encoded(Encoded),
    /// A request already written as OTLP/JSON (the stdout sink's format),
    /// one line without its newline.
    Json(Encoded),
}

/// An export request of `signal` as protobuf or JSON bytes:
/// `frame.buf[frame.at..]`.
/// Shared (cheap to clone for a retry), and its buffer goes back to the
/// queue's pool once the last sender lets go.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub signal: Signal,
    pub frame: Arc<Frame>,
}

#[derive(Debug)]
pub struct Frame {
    pub buf: Vec<u8>,
    pub at: usize,
    /// Where the request starts as a gRPC message, its 5-byte prefix
    /// written in front of `at` (protobuf requests): the gRPC sink sends
    /// `buf[grpc_at..]` as the HTTP/2 body as it is.
    pub grpc_at: Option<usize>,
}

impl Encoded {
    pub fn bytes(&self) -> &[u8] {
        &self.frame.buf[self.frame.at..]
    }

    /// The protobuf request as prost messages (tests, benches).
    pub fn decode(&self) -> Result<Payload, prost::DecodeError> {
        use prost::Message;
        let b = self.bytes();
        Ok(match self.signal {
            Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(b)?),
            Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(b)?),
            Signal::Metrics => Payload::Metrics(ExportMetricsServiceRequest::decode(b)?),
        })
    }
}

/// The bytes of a frame, owned (for HTTP bodies).
pub struct FrameBytes(pub Arc<Frame>);

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0.buf[self.0.at..]
    }
}

/// Why an export failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    pub retryable: bool,
    pub message: String,
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

/// What the destination said about an accepted request: how many records
/// it rejected anyway (OTLP partial success).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid endpoint `{endpoint}`: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("header `{0}` is not valid")]
    Header(String),
}

#[derive(Clone)]
pub enum Sink {
    Grpc(GrpcSink),
    Http(HttpSink),
    Stdout(StdoutSink),
}

impl Sink {
    pub fn new(settings: &SinkSettings) -> Result<Self, SinkError> {
        Ok(match settings {
            SinkSettings::Stdout { .. } => Sink::Stdout(StdoutSink),
            SinkSettings::Otlp(o) => match o.protocol {
                Protocol::Grpc => Sink::Grpc(GrpcSink::new(o)?),
                Protocol::HttpProtobuf => Sink::Http(HttpSink::new(o)?),
            },
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Grpc(g) => format!("OTLP/gRPC {}", g.endpoint()),
            Sink::Http(h) => format!("OTLP/HTTP {}", h.endpoint()),
            Sink::Stdout(_) => "OTLP-JSON lines on stdout".to_string(),
        }
    }

    pub async fn send(&self, p: &Payload) -> Result<Accepted, ExportError> {
        match self {
            Sink::Grpc(g) => g.send(p).await,
            Sink::Http(h) => h.send(p).await,
            Sink::Stdout(s) => s.send(p).await,
        }
    }
}
