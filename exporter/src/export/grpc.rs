//! OTLP over gRPC (tonic).

use super::sink::{Accepted, ExportError, Payload, SinkError};
use crate::config::OtlpSettings;
use opentelemetry_proto::tonic::collector::{
    logs::v1::logs_service_client::LogsServiceClient,
    metrics::v1::metrics_service_client::MetricsServiceClient,
    trace::v1::trace_service_client::TraceServiceClient,
};
use std::time::Duration;
use tonic::{
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Code, Status,
};

#[derive(Clone)]
pub struct GrpcSink {
    endpoint: String,
    channel: Channel,
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
            channel: ep.connect_lazy(),
            metadata,
            timeout: o.timeout,
            gzip: o.gzip,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
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
                let mut c = LogsServiceClient::new(self.channel.clone());
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
                let mut c = TraceServiceClient::new(self.channel.clone());
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
                let mut c = MetricsServiceClient::new(self.channel.clone());
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
        };
        Ok(Accepted {
            rejected: rejected.max(0) as u64,
        })
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
