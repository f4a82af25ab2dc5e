//! `tapio run --collector-config FILE`: take the OTLP receiver endpoints
//! out of an OpenTelemetry collector's own YAML, so a sidecar next to a
//! collector needs no second copy of them.
//!
//! Only `receivers.otlp` (or the first `receivers.otlp/<name>`) is read:
//! gRPC is preferred over HTTP, `0.0.0.0`/`::`/empty hosts become loopback
//! (a sidecar shares the pod's network), and a receiver with `tls` gets an
//! `https://` endpoint with the CA from the receiver's `client_ca_file` or
//! `ca_file` when one is set. A gRPC receiver with `transport: unix`
//! listens on the socket its `endpoint` names: `unix://` plus that path.

use super::{ConfigError, OtlpExporter, TlsConfig};
use serde_yaml_ng::Value;

/// Which exporter the collector's receiver calls for, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum FromCollector {
    Grpc(OtlpExporter),
    Http(OtlpExporter),
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(Value::String(key.to_string()))
}

/// `host:port` as a collector writes it → a URL a client can dial.
fn client_url(endpoint: &str, tls: bool) -> String {
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None => ("", endpoint),
    };
    let host = match host {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{port}")
}

fn protocol(p: &Value, default_endpoint: &str) -> OtlpExporter {
    let endpoint = get(p, "endpoint")
        .and_then(Value::as_str)
        .unwrap_or(default_endpoint);
    let tls = get(p, "tls");
    let ca = tls
        .and_then(|t| get(t, "client_ca_file").or_else(|| get(t, "ca_file")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let unix = get(p, "transport").and_then(Value::as_str) == Some("unix");
    OtlpExporter {
        endpoint: Some(if unix {
            format!("unix://{endpoint}")
        } else {
            client_url(endpoint, tls.is_some())
        }),
        tls: TlsConfig {
            ca_file: ca,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Read the OTLP receiver of a collector config.
pub fn from_collector_yaml(text: &str) -> Result<FromCollector, ConfigError> {
    let doc: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::new("collector config", format!("not YAML: {e}")))?;
    let receivers = get(&doc, "receivers")
        .and_then(Value::as_mapping)
        .ok_or_else(|| ConfigError::new("receivers", "the collector config has no receivers"))?;
    let otlp = receivers
        .iter()
        .find(|(k, _)| {
            k.as_str()
                .is_some_and(|k| k == "otlp" || k.starts_with("otlp/"))
        })
        .map(|(_, v)| v)
        .ok_or_else(|| {
            ConfigError::new(
                "receivers.otlp",
                "the collector config has no otlp receiver",
            )
        })?;
    let protocols = get(otlp, "protocols").ok_or_else(|| {
        ConfigError::new(
            "receivers.otlp.protocols",
            "no protocols: neither grpc nor http",
        )
    })?;
    // The collector's defaults: gRPC on 4317, HTTP on 4318.
    if let Some(g) = get(protocols, "grpc") {
        return Ok(FromCollector::Grpc(protocol(g, "localhost:4317")));
    }
    if let Some(h) = get(protocols, "http") {
        return Ok(FromCollector::Http(protocol(h, "localhost:4318")));
    }
    Err(ConfigError::new(
        "receivers.otlp.protocols",
        "neither grpc nor http is enabled",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_socket_receiver_is_dialled_on_its_socket() {
        let y = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: /run/otelcol/otlp.sock\n        transport: unix\n";
        let Ok(FromCollector::Grpc(o)) = from_collector_yaml(y) else {
            panic!("grpc expected")
        };
        assert_eq!(o.endpoint.as_deref(), Some("unix:///run/otelcol/otlp.sock"));
    }

    #[test]
    fn prefers_grpc_and_dials_loopback_for_wildcards() {
        let y = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\n      http:\n        endpoint: 0.0.0.0:4318\n";
        let FromCollector::Grpc(o) = from_collector_yaml(y).unwrap() else {
            panic!("want grpc")
        };
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    }

    #[test]
    fn http_only_with_tls_and_defaults() {
        let y = "receivers:\n  otlp/in:\n    protocols:\n      http:\n        tls:\n          cert_file: s.pem\n          key_file: s.key\n          client_ca_file: /etc/ca.pem\n";
        let FromCollector::Http(o) = from_collector_yaml(y).unwrap() else {
            panic!("want http")
        };
        assert_eq!(o.endpoint.as_deref(), Some("https://localhost:4318"));
        assert_eq!(o.tls.ca_file.as_deref(), Some("/etc/ca.pem"));
        let y =
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: \"[::1]:5317\"\n";
        let FromCollector::Grpc(o) = from_collector_yaml(y).unwrap() else {
            panic!()
        };
        assert_eq!(o.endpoint.as_deref(), Some("http://[::1]:5317"));
    }

    #[test]
    fn missing_receiver_is_a_clear_error() {
        let e = from_collector_yaml("receivers:\n  jaeger: {}\n").unwrap_err();
        assert_eq!(e.path, "receivers.otlp");
        assert!(from_collector_yaml("exporters: {}\n").is_err());
    }

    #[test]
    fn the_shipped_collector_config_is_understood() {
        let text = include_str!("../../../otel-config/collector.yaml");
        assert!(matches!(
            from_collector_yaml(text),
            Ok(FromCollector::Grpc(_))
        ));
    }
}
