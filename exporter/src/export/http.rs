//! OTLP over HTTP with protobuf bodies (reqwest, rustls).

use super::sink::{Accepted, ExportError, Frame, FrameBytes, Payload, SinkError};
use crate::config::{OtlpSettings, TlsConfig};
use crate::telemetry::Signal;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
    trace::v1::ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE},
    StatusCode,
};
use std::io::Write;

#[derive(Clone)]
pub struct HttpSink {
    base: String,
    client: reqwest::Client,
    gzip: bool,
}

fn read(path: &str) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|e| SinkError::Tls(format!("{path}: {e}")))
}

/// Redirects followed at most (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// Why a redirect from the configured URL `from` to `to` is not followed:
/// the configured headers (credentials, often) and the data go only to the
/// configured server, and never in clear text when it was https. Same host
/// and port, or an upgrade to https on the same host, are fine.
pub fn redirect_refusal(from: &reqwest::Url, to: &reqwest::Url) -> Option<String> {
    let refuse = |why: &str| Some(format!("refused a redirect from {from} to {to}: {why}"));
    if from.scheme() == "https" && to.scheme() != "https" {
        return refuse("it downgrades https to http");
    }
    if from.host_str() != to.host_str() {
        return refuse("another host would get the configured headers and data");
    }
    let upgrade = from.scheme() == "http" && to.scheme() == "https";
    if !upgrade && from.port_or_known_default() != to.port_or_known_default() {
        return refuse("another port would get the configured headers and data");
    }
    None
}

/// A client with default headers, a per-request timeout and the TLS
/// settings of `tls` (extra CA roots, a client identity). The OTLP/HTTP
/// sink and the OpAMP agent share it.
pub fn client<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    timeout: std::time::Duration,
    tls: &TlsConfig,
) -> Result<reqwest::Client, SinkError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| SinkError::Header(k.to_string()))?;
        let val = HeaderValue::from_str(v).map_err(|_| SinkError::Header(k.to_string()))?;
        map.insert(name, val);
    }
    let mut b = reqwest::Client::builder()
        .default_headers(map)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let refusal = attempt
                .previous()
                .first()
                .and_then(|from| redirect_refusal(from, attempt.url()));
            if let Some(why) = refusal {
                attempt.error(why)
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        }))
        .timeout(timeout)
        .user_agent(concat!("tapio/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &tls.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| SinkError::Tls(format!("{ca}: {e}")))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = read(c)?;
        pem.extend(read(k)?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| SinkError::Tls(e.to_string()))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| SinkError::Tls(e.to_string()))
}

impl HttpSink {
    pub fn new(o: &OtlpSettings) -> Result<Self, SinkError> {
        let client = client(
            o.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            o.timeout,
            &o.tls,
        )?;
        reqwest::Url::parse(&o.endpoint).map_err(|e| SinkError::Endpoint {
            endpoint: o.endpoint.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            base: o.endpoint.trim_end_matches('/').to_string(),
            client,
            gzip: o.gzip,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub async fn send(&self, p: &Payload) -> Result<Accepted, ExportError> {
        let path = |s: Signal| match s {
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        };
        let (path, body) = match p {
            Payload::Logs(r) => (path(Signal::Logs), Body::Owned(r.encode_to_vec())),
            Payload::Traces(r) => (path(Signal::Traces), Body::Owned(r.encode_to_vec())),
            Payload::Metrics(r) => (path(Signal::Metrics), Body::Owned(r.encode_to_vec())),
            Payload::Encoded(e) => (path(e.signal), Body::Shared(e.frame.clone())),
            Payload::Json(_) => {
                return Err(ExportError::permanent(
                    "an OTLP-JSON request reached the HTTP/protobuf sink",
                ))
            }
        };
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-protobuf");
        let body: reqwest::Body = if self.gzip {
            let raw: &[u8] = match &body {
                Body::Owned(v) => v,
                Body::Shared(f) => &f.buf[f.at..],
            };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(raw)
                .and_then(|_| enc.finish())
                .map_err(|e| ExportError::permanent(format!("gzip: {e}")))?
                .into()
        } else {
            match body {
                Body::Owned(v) => v.into(),
                // The request's bytes as they are, without a copy.
                Body::Shared(f) => bytes::Bytes::from_owner(FrameBytes(f)).into(),
            }
        };
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::retryable(format!("HTTP {path}: {}", error_chain(&e))))?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(Accepted {
                rejected: rejected(p, &bytes),
            });
        }
        let msg = format!("HTTP {path}: {status}");
        // OTLP/HTTP: these statuses are retryable, the rest are not.
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ExportError::retryable(msg),
            _ => ExportError::permanent(msg),
        })
    }
}

enum Body {
    Owned(Vec<u8>),
    Shared(std::sync::Arc<Frame>),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

/// Partial-success count from a 2xx body (empty bodies mean full success).
fn rejected(p: &Payload, body: &[u8]) -> u64 {
    let signal = match p {
        Payload::Logs(_) => Signal::Logs,
        Payload::Traces(_) => Signal::Traces,
        Payload::Metrics(_) => Signal::Metrics,
        Payload::Encoded(e) | Payload::Json(e) => e.signal,
    };
    let n = match signal {
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records),
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_data_points),
    };
    n.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::redirect_refusal;

    fn check(from: &str, to: &str) -> Option<String> {
        redirect_refusal(&from.parse().unwrap(), &to.parse().unwrap())
    }

    #[test]
    fn redirects_stay_with_the_configured_server() {
        assert_eq!(
            check("http://a:4320/v1/opamp", "http://a:4320/v2/opamp"),
            None
        );
        assert_eq!(check("http://a/v1/opamp", "https://a/v1/opamp"), None);
        assert_eq!(check("https://a:8443/x", "https://a:8443/y"), None);
        assert_eq!(
            check("https://a/v1/opamp", "http://a/v1/opamp").unwrap(),
            "refused a redirect from https://a/v1/opamp to http://a/v1/opamp: it downgrades https to http"
        );
        assert!(check("http://a:4320/x", "http://b:4320/x")
            .unwrap()
            .ends_with("another host would get the configured headers and data"));
        assert!(check("http://127.0.0.1:4320/x", "http://localhost:4320/x").is_some());
        assert!(check("http://a:4320/x", "http://a:4321/x")
            .unwrap()
            .ends_with("another port would get the configured headers and data"));
    }
}
