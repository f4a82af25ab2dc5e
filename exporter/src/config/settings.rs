//! Resolves the file's [`Config`] and the standard `OTEL_*` environment
//! variables into the [`Settings`] the agent runs with.
//!
//! Precedence, per setting: the config file, then the environment, then the
//! built-in default (the OpenTelemetry SDK defaults where one exists).

use super::{check_otlp_endpoint, model::*, ConfigError};
use std::time::Duration;

/// Reads an environment variable; a function so tests need not touch the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        }
    }
}

/// A resolved OTLP exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub protocol: Protocol,
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub tls: TlsConfig,
    pub retry: RetryConfig,
    pub queue_size: usize,
    /// Encoded bytes per signal the queue holds at most.
    pub queue_bytes: u64,
    /// Requests in flight at once per signal.
    pub num_consumers: usize,
}

/// Where signals go.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSettings {
    /// OTLP-JSON lines on stdout.
    Stdout { queue_size: usize },
    /// OTLP over gRPC or HTTP.
    Otlp(Box<OtlpSettings>),
}

impl SinkSettings {
    pub fn queue_size(&self) -> usize {
        match self {
            SinkSettings::Stdout { queue_size } => *queue_size,
            SinkSettings::Otlp(o) => o.queue_size,
        }
    }

    /// The queue's byte bound per signal (stdout's is the default one).
    pub fn queue_bytes(&self) -> u64 {
        match self {
            SinkSettings::Stdout { .. } => QueueConfig::default().queue_bytes.0,
            SinkSettings::Otlp(o) => o.queue_bytes,
        }
    }

    /// Export requests in flight at once per signal (stdout writes lines
    /// in order: one).
    pub fn consumers(&self) -> usize {
        match self {
            SinkSettings::Stdout { .. } => 1,
            SinkSettings::Otlp(o) => o.num_consumers,
        }
    }
}

/// Records per export request unless configured. The OTel SDKs' 512 made
/// Tapio pay ~120 µs per request besides its records (h2 framing, the
/// export task's wakeups, the response): 2048 took 12-14 % off its CPU per
/// event under load (README, "A receiver that counts from the bytes"). The
/// requests in flight count against `sending_queue.queue_bytes`, so the
/// bigger requests cost no memory beyond the bound.
pub const DEFAULT_MAX_BATCH: usize = 2048;

/// One signal's batching, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub schedule_delay: Duration,
    pub max_batch: usize,
}

/// Everything `tapio run` needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub probes: Probes,
    pub sink: SinkSettings,
    pub logs: BatchSettings,
    pub traces: BatchSettings,
    pub metric_interval: Duration,
    pub shutdown_timeout: Duration,
    /// `pipeline.worker_threads` (default 1).
    pub worker_threads: usize,
    /// Resource attributes from config and environment (host and service
    /// attributes are added by `otel::resource`).
    pub resource: Vec<(String, AttrValue)>,
    /// Where `/metrics` is served, if anywhere.
    pub prometheus: Option<std::net::SocketAddr>,
    /// The OpAMP agent, if configured.
    pub opamp: Option<OpampExtension>,
}

impl Settings {
    /// The URLs of Tapio's own endpoints (the OTLP exporter and the OpAMP
    /// server): the packet probes never drop or delay traffic with them
    /// (a block list or chaos experiment must not cut Tapio off).
    pub fn own_endpoints(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let SinkSettings::Otlp(o) = &self.sink {
            out.push(o.endpoint.clone());
        }
        if let Some(e) = self
            .opamp
            .as_ref()
            .and_then(|o| o.server.http.as_ref())
            .and_then(|h| h.endpoint.clone())
        {
            out.push(e);
        }
        out
    }
}

struct Resolver<'a> {
    env: EnvLookup<'a>,
    errs: Vec<ConfigError>,
}

impl Resolver<'_> {
    fn millis(&mut self, var: &str) -> Option<Duration> {
        let v = (self.env)(var)?;
        match v.trim().parse::<u64>() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => {
                self.errs.push(ConfigError::new(
                    format!("env {var}"),
                    format!("`{v}` is not a whole number of milliseconds"),
                ));
                None
            }
        }
    }

    fn count(&mut self, var: &str) -> Option<usize> {
        let v = (self.env)(var)?;
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.errs.push(ConfigError::new(
                    format!("env {var}"),
                    format!("`{v}` is not a positive count"),
                ));
                None
            }
        }
    }

    /// `k1=v1,k2=v2` with percent-encoded values (W3C baggage style), as
    /// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES use.
    fn pairs(&mut self, var: &str) -> Vec<(String, String)> {
        let Some(v) = (self.env)(var) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((k, val)) if !k.trim().is_empty() => {
                    let val = percent_encoding::percent_decode_str(val.trim()).decode_utf8_lossy();
                    out.push((k.trim().to_string(), val.into_owned()));
                }
                _ => self.errs.push(ConfigError::new(
                    format!("env {var}"),
                    format!("`{item}` is not key=value"),
                )),
            }
        }
        out
    }

    fn otlp(&mut self, file: &OtlpExporter, protocol: Protocol, base: &str) -> OtlpSettings {
        let endpoint = match file.endpoint.clone() {
            Some(e) => e,
            None => match (self.env)("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(e) => {
                    if let Err(m) = check_otlp_endpoint(&e, protocol == Protocol::Grpc) {
                        self.errs
                            .push(ConfigError::new("env OTEL_EXPORTER_OTLP_ENDPOINT", m));
                    }
                    e
                }
                None => protocol.default_endpoint().to_string(),
            },
        };
        let mut headers = self.pairs("OTEL_EXPORTER_OTLP_HEADERS");
        for (k, v) in &file.headers {
            headers.retain(|(ek, _)| !ek.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.clone()));
        }
        let gzip = match file.compression {
            Some(c) => c == Compression::Gzip,
            None => match (self.env)("OTEL_EXPORTER_OTLP_COMPRESSION")
                .as_deref()
                .map(str::trim)
            {
                None | Some("none") => false,
                Some("gzip") => true,
                Some(other) => {
                    self.errs.push(ConfigError::new(
                        "env OTEL_EXPORTER_OTLP_COMPRESSION",
                        format!("`{other}`: use gzip or none"),
                    ));
                    false
                }
            },
        };
        let timeout = file
            .timeout
            .or_else(|| self.millis("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .unwrap_or(Duration::from_secs(10));
        let mut tls = file.tls.clone();
        tls.ca_file = tls
            .ca_file
            .or_else(|| (self.env)("OTEL_EXPORTER_OTLP_CERTIFICATE"));
        tls.cert_file = tls
            .cert_file
            .or_else(|| (self.env)("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"));
        tls.key_file = tls
            .key_file
            .or_else(|| (self.env)("OTEL_EXPORTER_OTLP_CLIENT_KEY"));
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            self.errs.push(ConfigError::new(
                format!("{base}.tls"),
                "a client certificate and its key go together (file or OTEL_EXPORTER_OTLP_CLIENT_*)",
            ));
        }
        if let Some(m) = tls_without_https(&endpoint, &tls) {
            self.errs.push(ConfigError::new(format!("{base}.tls"), m));
        }
        OtlpSettings {
            protocol,
            endpoint,
            headers,
            gzip,
            timeout,
            tls,
            retry: file.retry_on_failure.clone(),
            queue_size: file.sending_queue.queue_size,
            queue_bytes: file.sending_queue.queue_bytes.0,
            num_consumers: file.sending_queue.num_consumers,
        }
    }

    fn sink(&mut self, ex: &Exporters) -> SinkSettings {
        if let Some(o) = &ex.otlp {
            return SinkSettings::Otlp(Box::new(self.otlp(o, Protocol::Grpc, "exporters.otlp")));
        }
        if let Some(o) = &ex.otlphttp {
            return SinkSettings::Otlp(Box::new(self.otlp(
                o,
                Protocol::HttpProtobuf,
                "exporters.otlphttp",
            )));
        }
        if let Some(s) = &ex.stdout {
            return SinkSettings::Stdout {
                queue_size: s.queue_size.unwrap_or(QueueConfig::default().queue_size),
            };
        }
        let endpoint = (self.env)("OTEL_EXPORTER_OTLP_ENDPOINT");
        let protocol = (self.env)("OTEL_EXPORTER_OTLP_PROTOCOL");
        if endpoint.is_none() && protocol.is_none() {
            return SinkSettings::Stdout {
                queue_size: QueueConfig::default().queue_size,
            };
        }
        // The OTLP exporter spec makes http/protobuf the default protocol.
        let protocol = match protocol.as_deref().map(str::trim) {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                self.errs.push(ConfigError::new(
                    "env OTEL_EXPORTER_OTLP_PROTOCOL",
                    format!("`{other}` is not supported: use grpc or http/protobuf"),
                ));
                Protocol::HttpProtobuf
            }
        };
        SinkSettings::Otlp(Box::new(self.otlp(
            &OtlpExporter::default(),
            protocol,
            "env",
        )))
    }

    fn batch(&mut self, file: &BatchConfig, prefix: &str, default_delay_ms: u64) -> BatchSettings {
        let schedule_delay = file
            .schedule_delay
            .or_else(|| self.millis(&format!("{prefix}_SCHEDULE_DELAY")))
            .unwrap_or(Duration::from_millis(default_delay_ms));
        let max_batch = file
            .max_export_batch_size
            .or_else(|| self.count(&format!("{prefix}_MAX_EXPORT_BATCH_SIZE")))
            .unwrap_or(DEFAULT_MAX_BATCH);
        BatchSettings {
            schedule_delay: schedule_delay.max(Duration::from_millis(1)),
            max_batch,
        }
    }

    fn resource(&mut self, file: &Resource) -> Vec<(String, AttrValue)> {
        let mut attrs: Vec<(String, AttrValue)> = self
            .pairs("OTEL_RESOURCE_ATTRIBUTES")
            .into_iter()
            .map(|(k, v)| (k, AttrValue::String(v)))
            .collect();
        if let Some(name) = (self.env)("OTEL_SERVICE_NAME") {
            attrs.retain(|(k, _)| k != "service.name");
            attrs.push(("service.name".into(), AttrValue::String(name)));
        }
        for (k, v) in &file.attributes {
            attrs.retain(|(ek, _)| ek != k);
            attrs.push((k.clone(), v.clone()));
        }
        attrs
    }
}

impl Config {
    /// Resolve against an environment. Errors name the variable or key.
    pub fn resolve(&self, env: EnvLookup<'_>) -> Result<Settings, Vec<ConfigError>> {
        let mut r = Resolver {
            env,
            errs: Vec::new(),
        };
        let sink = r.sink(&self.exporters);
        // SDK defaults: logs 1s, spans 5s, metrics 60s.
        let logs = r.batch(&self.pipeline.logs, "OTEL_BLRP", 1000);
        let traces = r.batch(&self.pipeline.traces, "OTEL_BSP", 5000);
        let metric_interval = self
            .pipeline
            .metrics
            .export_interval
            .or_else(|| r.millis("OTEL_METRIC_EXPORT_INTERVAL"))
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_millis(100));
        let resource = r.resource(&self.resource);
        if !r.errs.is_empty() {
            return Err(r.errs);
        }
        Ok(Settings {
            probes: self.probes.clone(),
            sink,
            logs,
            traces,
            metric_interval,
            shutdown_timeout: self
                .pipeline
                .shutdown_timeout
                .unwrap_or(Duration::from_secs(5)),
            worker_threads: self.pipeline.worker_threads.unwrap_or(1),
            resource,
            prometheus: self
                .exporters
                .prometheus
                .as_ref()
                .and_then(|p| p.endpoint.parse().ok()),
            opamp: self.extensions.opamp.clone(),
        })
    }
}

/// TLS settings (a CA, a client certificate) with an `http://` endpoint:
/// whoever wrote them meant the connection to be verified, and plain
/// HTTP would silently verify nothing. An error, not a guess at `https`.
pub fn tls_without_https(endpoint: &str, tls: &TlsConfig) -> Option<String> {
    let set = tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.key_file.is_some()
        || tls.server_name.is_some();
    if set && endpoint.starts_with("unix:") {
        return Some(format!(
            "TLS is configured but `{endpoint}` is a Unix socket, over which Tapio sends \
             without TLS (the socket file's permissions say who may connect); remove tls"
        ));
    }
    let plain = reqwest::Url::parse(endpoint).is_ok_and(|u| u.scheme() == "http");
    (set && plain).then(|| {
        format!(
            "TLS is configured but the endpoint `{endpoint}` is plain http, which would send \
             everything unencrypted and unverified; use https:// (or remove tls)"
        )
    })
}

/// The warning for an endpoint that sends in clear text beyond this host.
/// Tapio has no switch that turns certificate verification off: `http://`
/// is the only way to go without TLS, and it is said loudly unless the
/// peer is on loopback (a sidecar collector in the same pod).
pub fn plaintext_warning(endpoint: &str) -> Option<String> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    (!local).then(|| {
        format!(
            "{endpoint} is plain http to another host: no TLS, so anyone on the path can read \
             and change what is sent; use https:// unless the network is trusted"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn a_ca_from_the_environment_with_an_http_endpoint_is_an_error() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca = ca.path().to_str().unwrap();
        let e = env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://collector.example:4317",
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
        ]);
        let errs = Config::default().resolve(&e).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "env.tls");
        assert!(errs[0].message.contains("is plain http"), "{errs:?}");
        // The same CA with https is what was meant.
        let e = env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example:4317",
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
        ]);
        assert!(Config::default().resolve(&e).is_ok());
    }

    #[test]
    fn plain_http_beyond_loopback_is_warned_about() {
        for local in [
            "http://127.0.0.1:4317",
            "http://localhost:4318",
            "http://[::1]:4317",
            "https://collector.example:4317",
        ] {
            assert_eq!(plaintext_warning(local), None, "{local}");
        }
        for remote in ["http://collector.example:4317", "http://198.18.0.2:4318"] {
            let w = plaintext_warning(remote).expect(remote);
            assert!(w.contains("no TLS"), "{w}");
        }
    }

    #[test]
    fn no_exporter_no_env_means_stdout() {
        let s = Config::default().resolve(&env(&[])).unwrap();
        assert!(matches!(s.sink, SinkSettings::Stdout { .. }));
        assert_eq!(s.logs.schedule_delay, Duration::from_secs(1));
        assert_eq!(s.traces.schedule_delay, Duration::from_secs(5));
        assert_eq!(s.metric_interval, Duration::from_secs(60));
        assert_eq!(s.worker_threads, 1);
        let mut c = Config::default();
        c.pipeline.worker_threads = Some(3);
        assert_eq!(c.resolve(&env(&[])).unwrap().worker_threads, 3);
    }

    #[test]
    fn env_alone_configures_otlp() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9999"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-token=a%20b,tenant=t1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_SERVICE_NAME", "edge"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=ignored",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "300"),
        ]);
        let s = Config::default().resolve(&e).unwrap();
        let SinkSettings::Otlp(o) = &s.sink else {
            panic!("want otlp")
        };
        assert_eq!(o.protocol, Protocol::Grpc);
        assert_eq!(o.endpoint, "http://127.0.0.1:9999");
        assert!(o.gzip);
        assert!(o.headers.contains(&("x-token".into(), "a b".into())));
        assert_eq!(s.metric_interval, Duration::from_millis(1500));
        assert_eq!(s.traces.schedule_delay, Duration::from_millis(200));
        assert_eq!(s.logs.schedule_delay, Duration::from_millis(300));
        assert!(s
            .resource
            .contains(&("service.name".into(), AttrValue::String("edge".into()))));
        assert!(s.resource.contains(&(
            "deployment.environment".into(),
            AttrValue::String("prod".into())
        )));
    }

    #[test]
    fn default_protocol_is_http_protobuf() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]);
        let s = Config::default().resolve(&e).unwrap();
        let SinkSettings::Otlp(o) = &s.sink else {
            panic!("want otlp")
        };
        assert_eq!(o.protocol, Protocol::HttpProtobuf);
    }

    #[test]
    fn file_wins_over_env() {
        let mut c = Config::default();
        c.exporters.otlphttp = Some(OtlpExporter {
            endpoint: Some("http://127.0.0.1:1234".into()),
            compression: Some(Compression::None),
            headers: [("tenant".to_string(), "file".to_string())].into(),
            ..Default::default()
        });
        c.pipeline.metrics.export_interval = Some(Duration::from_secs(2));
        c.resource
            .attributes
            .insert("service.name".into(), AttrValue::String("from-file".into()));
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9999"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "tenant=env,other=1"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "10"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ]);
        let s = c.resolve(&e).unwrap();
        let SinkSettings::Otlp(o) = &s.sink else {
            panic!("want otlp")
        };
        assert_eq!(o.endpoint, "http://127.0.0.1:1234");
        assert!(!o.gzip);
        assert!(o.headers.contains(&("tenant".into(), "file".into())));
        assert!(o.headers.contains(&("other".into(), "1".into())));
        assert_eq!(s.metric_interval, Duration::from_secs(2));
        let names: Vec<_> = s
            .resource
            .iter()
            .filter(|(k, _)| k == "service.name")
            .collect();
        assert_eq!(
            names,
            vec![&(
                "service.name".to_string(),
                AttrValue::String("from-file".into())
            )]
        );
    }

    #[test]
    fn bad_env_values_are_errors_naming_the_variable() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ]);
        let errs = Config::default().resolve(&e).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("env OTEL_EXPORTER_OTLP_PROTOCOL")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("env OTEL_METRIC_EXPORT_INTERVAL")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("env OTEL_EXPORTER_OTLP_HEADERS")),
            "{text:?}"
        );
    }
}
