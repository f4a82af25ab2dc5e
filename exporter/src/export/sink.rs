//! Where export requests go: OTLP gRPC, OTLP HTTP, or OTLP-JSON on stdout.

use super::{grpc::GrpcSink, http::HttpSink, stdout::StdoutSink};
use crate::config::{Protocol, SinkSettings};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};

/// One export request.
#[derive(Debug, Clone)]
pub enum Payload {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
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
