//! Tapio as an OpAMP agent over the plain HTTP transport
//! (`extensions.opamp`): every `polling_interval`, or at once when there is
//! news, Tapio POSTs an `AgentToServer` (`application/x-protobuf`) and
//! reads the server's `ServerToAgent` from the response.
//!
//! It reports its description (`service.*` identifying, the rest of the
//! resource non-identifying), health, effective config and the status of
//! the last remote config; a remote config's YAML goes through
//! [`Policies::remote_received`], the same parse → validate → apply path
//! as the watched file, reported APPLYING, then APPLIED or FAILED with the
//! reason (the previous policy stays in force). When the server is down,
//! Tapio retries with capped exponential backoff, honours the server's
//! Retry-After, counts every exchange (`tapio.opamp.exchanges`) and logs
//! at most once a minute.
//!
//! Safety against a server (or a policy) that misbehaves:
//! - a remote policy is rolled back to the file's when the server has not
//!   answered for `rollback_after_unreachable` while it is in force (the
//!   policy may be what cut Tapio off); the rollback is logged, goes
//!   through the normal reload path (`tapio.config.reload`), and is
//!   reported to the server as FAILED when it answers again;
//! - an answer larger than [`MAX_RESPONSE_BYTES`] is refused (reading
//!   stops at the limit, whether or not the server sent a length);
//! - requests are at least `min(polling_interval, 1s)` apart whatever the
//!   server asks (Retry-After: 0, ReportFullState on every answer);
//! - redirects that downgrade https or lead to another host are refused
//!   (`export::http::client`): configured headers stay with the server
//!   they were configured for.

pub mod proto;

use crate::config::{OpampExtension, OpampHttp};
use crate::export::http::client as http_client;
use crate::otel::names::attr;
use crate::policy::Policies;
use crate::telemetry::Telemetry;
use opentelemetry_proto::tonic::{common::v1::any_value, resource::v1::Resource};
use prost::Message;
use proto::{capabilities as cap, RemoteConfigStatuses};
use std::sync::{atomic::Ordering::Relaxed, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest wait between attempts while the server is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest Tapio waits for the last message (AgentDisconnect) at shutdown.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The largest ServerToAgent Tapio reads: remote policies are YAML of a
/// few KiB; anything near this is a broken or hostile server.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// Requests are never closer together than `min(polling_interval, this)`.
const MIN_GAP_CAP: Duration = Duration::from_secs(1);
/// The key of Tapio's file in EffectiveConfig and the preferred key in a
/// remote config map.
pub const CONFIG_FILE_KEY: &str = "tapio.yaml";

#[derive(Debug, thiserror::Error)]
pub enum OpampError {
    #[error("opamp: {0}")]
    Client(#[from] crate::export::SinkError),
    #[error("opamp: instance_uid `{0}` is not a UUID")]
    InstanceUid(String),
    #[error("opamp: extensions.opamp.server.http.endpoint is not set")]
    NoEndpoint,
}

/// Why one exchange failed, and how long the server asked us to wait.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

/// The agent's side of the protocol.
pub struct Agent {
    http: reqwest::Client,
    endpoint: String,
    polling: Duration,
    uid: Vec<u8>,
    seq: u64,
    capabilities: u64,
    description: proto::AgentDescription,
    start_unix_ns: u64,
    policies: Arc<Mutex<Policies>>,
    telemetry: Arc<Telemetry>,
    accepts_remote: bool,
    reports_effective: bool,
    /// The status of the last remote config, once there was one.
    status: Option<proto::RemoteConfigStatus>,
    /// The hash of the last remote config applied or refused.
    processed_hash: Option<Vec<u8>>,
    status_dirty: bool,
    /// Policy generation last sent as EffectiveConfig.
    reported_generation: Option<u64>,
    /// Send description and health again (first message, server asked).
    full_state: bool,
    last_warn: Option<Instant>,
    /// When the last request was sent (the minimum gap counts from it).
    last_request: Option<Instant>,
    /// 0: never roll back.
    rollback_after: Duration,
    /// The hash of the remote config whose policy is in force, and since
    /// when the server has been silent (the apply, or its last answer).
    remote_in_force: Option<(Vec<u8>, Instant)>,
}

impl Agent {
    pub fn new(
        cfg: &OpampExtension,
        resource: &Resource,
        start_unix_ns: u64,
        policies: Arc<Mutex<Policies>>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, OpampError> {
        let http: &OpampHttp = cfg.server.http.as_ref().ok_or(OpampError::NoEndpoint)?;
        let endpoint = http.endpoint.clone().ok_or(OpampError::NoEndpoint)?;
        let client = http_client(
            http.headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("content-type", "application/x-protobuf")]),
            http.timeout,
            &http.tls,
        )?;
        let uid = match &cfg.instance_uid {
            Some(s) => uuid::Uuid::parse_str(s).map_err(|_| OpampError::InstanceUid(s.clone()))?,
            None => uuid::Uuid::now_v7(),
        };
        let c = &cfg.capabilities;
        let mut capabilities =
            cap::REPORTS_STATUS | cap::REPORTS_HEALTH | cap::REPORTS_REMOTE_CONFIG;
        if c.accepts_remote_config {
            capabilities |= cap::ACCEPTS_REMOTE_CONFIG;
        }
        if c.reports_effective_config {
            capabilities |= cap::REPORTS_EFFECTIVE_CONFIG;
        }
        let mut description = describe(resource, &uid.to_string());
        for (k, v) in &cfg.agent_description.non_identifying_attributes {
            description
                .non_identifying_attributes
                .retain(|a| &a.key != k);
            description
                .non_identifying_attributes
                .push(proto::KeyValue::string(k, v.clone()));
        }
        Ok(Self {
            http: client,
            endpoint,
            polling: http.polling_interval,
            uid: uid.as_bytes().to_vec(),
            seq: 0,
            capabilities,
            description,
            start_unix_ns,
            policies,
            telemetry,
            accepts_remote: c.accepts_remote_config,
            reports_effective: c.reports_effective_config,
            status: None,
            processed_hash: None,
            status_dirty: false,
            reported_generation: None,
            full_state: true,
            last_warn: None,
            last_request: None,
            rollback_after: cfg.rollback_after_unreachable,
            remote_in_force: None,
        })
    }

    /// Exchange messages until `stop`, then say goodbye.
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(
            endpoint = %self.endpoint,
            instance_uid = %uuid::Uuid::from_slice(&self.uid).map(|u| u.to_string()).unwrap_or_default(),
            "opamp: reporting to the server"
        );
        let gap = self.polling.min(MIN_GAP_CAP);
        let mut backoff = gap;
        let mut failing = false;
        loop {
            // However eager the server (or our news), never a busy loop.
            if let Some(last) = self.last_request {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until((last + gap).into()) => {}
                }
            }
            let msg = self.next_message();
            // A slow server must not hold up shutdown.
            let result = tokio::select! {
                r = self.exchange(&msg) => r,
                _ = stop.cancelled() => break,
            };
            let wait = match result {
                Ok(reply) => {
                    if failing {
                        tracing::info!(endpoint = %self.endpoint, "opamp: server reachable again");
                        failing = false;
                    }
                    backoff = gap;
                    if let Some((_, since)) = &mut self.remote_in_force {
                        *since = Instant::now();
                    }
                    self.sent(&msg);
                    match self.handle(reply).await {
                        Ok(()) if self.has_news() => Duration::ZERO,
                        Ok(()) => self.polling,
                        Err(f) => self.failed(&f, &mut backoff, &mut failing),
                    }
                }
                Err(f) => self.failed(&f, &mut backoff, &mut failing),
            };
            let wait = match self.rollback_due() {
                Some(left) if left.is_zero() => {
                    self.roll_back();
                    wait
                }
                Some(left) => wait.min(left),
                None => wait,
            };
            if wait.is_zero() {
                if stop.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut bye = self.header();
        bye.agent_disconnect = Some(proto::AgentDisconnect {});
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, self.exchange(&bye)).await;
    }

    /// While a remote policy is in force and rollback is on: how long until
    /// it is rolled back if the server stays silent.
    fn rollback_due(&self) -> Option<Duration> {
        if self.rollback_after.is_zero() {
            return None;
        }
        let (_, since) = self.remote_in_force.as_ref()?;
        Some(self.rollback_after.saturating_sub(since.elapsed()))
    }

    /// The server has been silent too long: back to the file's policy, and
    /// tell the server (FAILED, with why) when it answers again.
    fn roll_back(&mut self) {
        let Some((hash, _)) = self.remote_in_force.clone() else {
            return;
        };
        let why = format!(
            "rolled back to the config file's policy: the server did not answer for {:?} while this remote config was in force",
            self.rollback_after
        );
        tracing::warn!(endpoint = %self.endpoint, "opamp: {why}");
        let origin = format!("{} (rollback)", self.endpoint);
        let result = crate::supervise::lock(&self.policies).remote_received(&origin, None);
        match result {
            Ok(()) => {
                self.remote_in_force = None;
                // Not re-applied when the server offers it again: it may be
                // what cut us off. The server must send a new config.
                self.set_status(&hash, RemoteConfigStatuses::Failed, &why);
            }
            Err(e) => {
                tracing::error!(endpoint = %self.endpoint, "opamp: rollback failed ({e}); retrying");
                if let Some((_, since)) = &mut self.remote_in_force {
                    // Try again after another full period, not in a loop.
                    *since = Instant::now();
                }
            }
        }
    }

    /// Count a failure, log it (rate-limited) and say how long to wait.
    fn failed(&mut self, f: &Failure, backoff: &mut Duration, failing: &mut bool) -> Duration {
        self.telemetry.opamp.failed.fetch_add(1, Relaxed);
        // The server may have lost what we sent: send everything again.
        self.full_state = true;
        if self.status.is_some() {
            self.status_dirty = true;
        }
        self.reported_generation = None;
        if !*failing || self.last_warn.is_none_or(|t| t.elapsed() > WARN_EVERY) {
            self.last_warn = Some(Instant::now());
            tracing::warn!(endpoint = %self.endpoint, "opamp: {}; retrying", f.message);
        }
        *failing = true;
        let cap = MAX_BACKOFF.max(self.polling);
        // Retry-After is a floor ("not before"), never a reason to go
        // faster than our own backoff.
        let wait = f.retry_after.unwrap_or_default().max(*backoff).min(cap);
        *backoff = (*backoff * 2).min(cap);
        // Jitter keeps a fleet that lost its server from coming back in step.
        let jitter = 0.75 + (crate::clock::boot_ns() % 500) as f64 / 2000.0;
        wait.mul_f64(jitter)
    }

    fn has_news(&self) -> bool {
        self.status_dirty || self.full_state || self.effective_changed()
    }

    fn effective_changed(&self) -> bool {
        self.reports_effective && self.reported_generation != Some(self.generation())
    }

    fn generation(&self) -> u64 {
        crate::supervise::lock(&self.policies).generation()
    }

    fn header(&mut self) -> proto::AgentToServer {
        self.seq += 1;
        proto::AgentToServer {
            instance_uid: self.uid.clone(),
            sequence_num: self.seq,
            capabilities: self.capabilities,
            ..Default::default()
        }
    }

    /// The next message: the header, plus whatever changed since the
    /// server last heard from us.
    fn next_message(&mut self) -> proto::AgentToServer {
        let mut m = self.header();
        if self.full_state {
            m.agent_description = Some(self.description.clone());
            m.health = Some(proto::ComponentHealth {
                healthy: true,
                start_time_unix_nano: self.start_unix_ns,
                status: "running".into(),
                status_time_unix_nano: crate::clock::unix_ns(),
                last_error: String::new(),
            });
        }
        if self.status_dirty || self.full_state {
            m.remote_config_status = self.status.clone();
        }
        if self.reports_effective && (self.full_state || self.effective_changed()) {
            m.effective_config = Some(self.effective_config());
        }
        m
    }

    /// What `m` told the server no longer needs sending.
    fn sent(&mut self, m: &proto::AgentToServer) {
        if m.agent_description.is_some() {
            self.full_state = false;
        }
        if m.remote_config_status.is_some() {
            self.status_dirty = false;
        }
        if m.effective_config.is_some() {
            self.reported_generation = Some(self.generation());
        }
    }

    fn effective_config(&self) -> proto::EffectiveConfig {
        let yaml = crate::supervise::lock(&self.policies).effective_yaml();
        let mut files = std::collections::BTreeMap::new();
        files.insert(
            CONFIG_FILE_KEY.to_string(),
            proto::AgentConfigFile {
                body: yaml.into_bytes(),
                content_type: "text/yaml".into(),
            },
        );
        proto::EffectiveConfig {
            config_map: Some(proto::AgentConfigMap { config_map: files }),
        }
    }

    async fn exchange(
        &mut self,
        m: &proto::AgentToServer,
    ) -> Result<proto::ServerToAgent, Failure> {
        let fail = |message: String| Failure {
            message,
            retry_after: None,
        };
        self.last_request = Some(Instant::now());
        let mut resp = self
            .http
            .post(&self.endpoint)
            .body(m.encode_to_vec())
            .send()
            .await
            .map_err(|e| fail(format!("cannot reach the server: {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            // 503 and 429 may say when to come back (seconds).
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Failure {
                message: format!("the server answered HTTP {status}"),
                retry_after,
            });
        }
        let body = read_bounded(&mut resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(fail)?;
        let reply = proto::ServerToAgent::decode(body.as_slice())
            .map_err(|e| fail(format!("undecodable ServerToAgent: {e}")))?;
        if let Some(err) = &reply.error_response {
            return Err(Failure {
                message: format!("the server reported an error: {}", err.error_message),
                retry_after: err
                    .retry_info
                    .as_ref()
                    .filter(|_| err.r#type == proto::ERROR_UNAVAILABLE)
                    .map(|r| Duration::from_nanos(r.retry_after_nanoseconds)),
            });
        }
        self.telemetry.opamp.ok.fetch_add(1, Relaxed);
        Ok(reply)
    }

    /// Act on the server's answer.
    async fn handle(&mut self, reply: proto::ServerToAgent) -> Result<(), Failure> {
        if let Some(id) = &reply.agent_identification {
            if id.new_instance_uid.len() == 16 {
                tracing::info!("opamp: the server assigned a new instance uid");
                self.uid = id.new_instance_uid.clone();
                self.full_state = true;
            }
        }
        if reply.flags & proto::server_flags::REPORT_FULL_STATE != 0 {
            self.full_state = true;
            self.status_dirty = self.status.is_some();
            self.reported_generation = None;
        }
        let Some(rc) = reply.remote_config else {
            return Ok(());
        };
        if !self.accepts_remote {
            return Ok(());
        }
        if self.processed_hash.as_ref() == Some(&rc.config_hash) {
            return Ok(());
        }
        // Tell the server we are on it before the (possibly slow) apply.
        self.set_status(&rc.config_hash, RemoteConfigStatuses::Applying, "");
        let mut m = self.header();
        m.remote_config_status = self.status.clone();
        self.exchange(&m).await?;
        self.status_dirty = false;

        self.processed_hash = Some(rc.config_hash.clone());
        let origin = self.endpoint.clone();
        let result = policy_text(rc.config.as_ref()).and_then(|text| {
            let mut p = crate::supervise::lock(&self.policies);
            p.remote_received(&origin, text.as_deref()).map(|()| text)
        });
        let remote = matches!(&result, Ok(Some(_)));
        match result.map(|_| ()) {
            Ok(()) => {
                self.remote_in_force = remote.then(|| (rc.config_hash.clone(), Instant::now()));
                self.set_status(&rc.config_hash, RemoteConfigStatuses::Applied, "");
            }
            Err(why) => {
                tracing::error!(endpoint = %self.endpoint, "opamp: remote config not applied: {why}");
                self.set_status(&rc.config_hash, RemoteConfigStatuses::Failed, &why);
            }
        }
        Ok(())
    }

    fn set_status(&mut self, hash: &[u8], status: RemoteConfigStatuses, why: &str) {
        self.status = Some(proto::RemoteConfigStatus {
            last_remote_config_hash: hash.to_vec(),
            status: status as i32,
            error_message: why.to_string(),
        });
        self.status_dirty = true;
    }
}

/// The body of `resp`, refused once it passes `max` bytes (checked against
/// Content-Length first, then while reading: a server that sends no
/// length cannot make Tapio buffer without end).
async fn read_bounded(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!(
            "the answer is larger than {} MiB, Tapio's limit for a ServerToAgent; not read",
            max >> 20
        )
    };
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The YAML of a remote config map: the file named `tapio.yaml`, else the
/// one named `""` (the collector's convention for "the" config), else the
/// only file. `None` for an empty map: back to the file's policy.
pub fn policy_text(map: Option<&proto::AgentConfigMap>) -> Result<Option<String>, String> {
    let files = match map {
        Some(m) if !m.config_map.is_empty() => &m.config_map,
        _ => return Ok(None),
    };
    let file = files
        .get(CONFIG_FILE_KEY)
        .or_else(|| files.get(""))
        .or_else(|| (files.len() == 1).then(|| files.values().next()).flatten())
        .ok_or_else(|| {
            let names: Vec<&str> = files.keys().map(String::as_str).collect();
            format!(
                "the remote config has {} files ({}); send one, or name it `{CONFIG_FILE_KEY}`",
                files.len(),
                names.join(", ")
            )
        })?;
    let ct = file.content_type.to_ascii_lowercase();
    if !(ct.is_empty() || ct.contains("yaml")) {
        return Err(format!(
            "content type `{}`: Tapio takes YAML (text/yaml)",
            file.content_type
        ));
    }
    let text = String::from_utf8(file.body.clone())
        .map_err(|_| "the remote config is not UTF-8 text".to_string())?;
    Ok(Some(text))
}

/// The AgentDescription of a resource: `service.*` identify the agent,
/// everything else describes where it runs.
fn describe(resource: &Resource, instance_id: &str) -> proto::AgentDescription {
    let mut d = proto::AgentDescription::default();
    for kv in &resource.attributes {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            continue;
        };
        use proto::any_value::Value as V;
        let v = match value {
            any_value::Value::StringValue(s) => V::StringValue(s.clone()),
            any_value::Value::BoolValue(b) => V::BoolValue(*b),
            any_value::Value::IntValue(i) => V::IntValue(*i),
            any_value::Value::DoubleValue(f) => V::DoubleValue(*f),
            _ => continue,
        };
        let kv = proto::KeyValue {
            key: kv.key.clone(),
            value: Some(proto::AnyValue { value: Some(v) }),
        };
        if kv.key.starts_with("service.") {
            d.identifying_attributes.push(kv);
        } else {
            d.non_identifying_attributes.push(kv);
        }
    }
    d.identifying_attributes
        .retain(|a| a.key != attr::SERVICE_INSTANCE_ID);
    d.identifying_attributes.push(proto::KeyValue::string(
        attr::SERVICE_INSTANCE_ID,
        instance_id,
    ));
    d
}

/// reqwest's Display stops at the outermost error ("error sending
/// request"); the cause (connection refused…) is what an operator needs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(files: &[(&str, &str, &str)]) -> proto::AgentConfigMap {
        proto::AgentConfigMap {
            config_map: files
                .iter()
                .map(|(k, ct, body)| {
                    (
                        k.to_string(),
                        proto::AgentConfigFile {
                            body: body.as_bytes().to_vec(),
                            content_type: ct.to_string(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn picks_the_policy_file_of_a_remote_config() {
        assert_eq!(policy_text(None), Ok(None));
        assert_eq!(policy_text(Some(&map(&[]))), Ok(None));
        assert_eq!(
            policy_text(Some(&map(&[("x", "", "a: 1")]))),
            Ok(Some("a: 1".into()))
        );
        assert_eq!(
            policy_text(Some(&map(&[
                ("x", "", "a"),
                ("tapio.yaml", "text/yaml", "b")
            ]))),
            Ok(Some("b".into()))
        );
        assert_eq!(
            policy_text(Some(&map(&[("x", "", "a"), ("y", "", "b")]))).unwrap_err(),
            "the remote config has 2 files (x, y); send one, or name it `tapio.yaml`"
        );
        assert_eq!(
            policy_text(Some(&map(&[("", "application/json", "{}")]))).unwrap_err(),
            "content type `application/json`: Tapio takes YAML (text/yaml)"
        );
    }

    #[test]
    fn describes_service_as_identifying_and_the_host_as_not() {
        let r = crate::otel::resource::build(&[]);
        let d = describe(&r, "0192-test");
        let keys = |v: &[proto::KeyValue]| v.iter().map(|k| k.key.clone()).collect::<Vec<_>>();
        let id = keys(&d.identifying_attributes);
        assert!(id.contains(&"service.name".to_string()), "{id:?}");
        assert!(id.contains(&"service.version".to_string()));
        assert!(id.contains(&"service.instance.id".to_string()));
        let non = keys(&d.non_identifying_attributes);
        assert!(non.contains(&"os.type".to_string()), "{non:?}");
        assert!(!non.iter().any(|k| k.starts_with("service.")));
    }
}
