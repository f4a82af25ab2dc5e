//! The OpAMP messages Tapio exchanges, as prost structs.
//!
//! Hand-written because no crate on crates.io carries OpAMP's protobufs
//! (none of `opamp`, `opamp-client`, `opamp-proto`, `opentelemetry-opamp`
//! exists), and generating them would mean vendoring `opamp.proto` and a
//! `protoc` in the build. Only the subset an HTTP agent that takes remote
//! config needs is here; prost skips every field it does not know, so the
//! rest of a server's message is ignored, as proto3 intends.
//!
//! Field numbers and types are those of the published
//! `open-telemetry/opamp-spec` `proto/opamp.proto` and `anyvalue.proto`
//! (package `opamp.proto`, spec 0.x with `AvailableComponents` = 14, the
//! version `opentelemetry-opamp-client` 0.5b0 on PyPI was generated from).
//! The integration test's OpAMP server decodes what Tapio sends with that
//! generated code and re-encodes it, so a wrong number or type here fails
//! there.

use std::collections::BTreeMap;

/// AgentToServer: every request body of the HTTP transport.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentToServer {
    /// 16 bytes, UUID v7 recommended.
    #[prost(bytes = "vec", tag = "1")]
    pub instance_uid: Vec<u8>,
    /// +1 per message, so the server can see one went missing.
    #[prost(uint64, tag = "2")]
    pub sequence_num: u64,
    #[prost(message, optional, tag = "3")]
    pub agent_description: Option<AgentDescription>,
    /// Bitmask of [`capabilities`]; always set.
    #[prost(uint64, tag = "4")]
    pub capabilities: u64,
    #[prost(message, optional, tag = "5")]
    pub health: Option<ComponentHealth>,
    #[prost(message, optional, tag = "6")]
    pub effective_config: Option<EffectiveConfig>,
    #[prost(message, optional, tag = "7")]
    pub remote_config_status: Option<RemoteConfigStatus>,
    /// Set in the last message before the agent goes away.
    #[prost(message, optional, tag = "9")]
    pub agent_disconnect: Option<AgentDisconnect>,
    #[prost(uint64, tag = "10")]
    pub flags: u64,
}

/// AgentCapabilities bits (enum AgentCapabilities).
pub mod capabilities {
    pub const REPORTS_STATUS: u64 = 0x1;
    pub const ACCEPTS_REMOTE_CONFIG: u64 = 0x2;
    pub const REPORTS_EFFECTIVE_CONFIG: u64 = 0x4;
    pub const REPORTS_HEALTH: u64 = 0x800;
    pub const REPORTS_REMOTE_CONFIG: u64 = 0x1000;
}

/// ServerToAgentFlags bits.
pub mod server_flags {
    /// The server lost state: send everything again.
    pub const REPORT_FULL_STATE: u64 = 0x1;
}

/// The agent's type, version and where it runs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDescription {
    /// `service.name`, `service.version`, `service.instance.id`, … .
    #[prost(message, repeated, tag = "1")]
    pub identifying_attributes: Vec<KeyValue>,
    /// `host.name`, `os.type`, … .
    #[prost(message, repeated, tag = "2")]
    pub non_identifying_attributes: Vec<KeyValue>,
}

/// anyvalue.proto KeyValue.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// anyvalue.proto AnyValue (the scalar cases; arrays, kvlists and bytes
/// are not sent by Tapio and skipped when received).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
    }
}

impl KeyValue {
    pub fn string(key: &str, v: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        }
    }
}

/// ComponentHealth (the agent as a whole; no sub-component map).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ComponentHealth {
    #[prost(bool, tag = "1")]
    pub healthy: bool,
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    #[prost(string, tag = "3")]
    pub last_error: String,
    #[prost(string, tag = "4")]
    pub status: String,
    #[prost(fixed64, tag = "5")]
    pub status_time_unix_nano: u64,
}

/// The configuration in use.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EffectiveConfig {
    #[prost(message, optional, tag = "1")]
    pub config_map: Option<AgentConfigMap>,
}

/// Named config files.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentConfigMap {
    #[prost(btree_map = "string, message", tag = "1")]
    pub config_map: BTreeMap<String, AgentConfigFile>,
}

/// One config file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentConfigFile {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    #[prost(string, tag = "2")]
    pub content_type: String,
}

/// What became of the last remote config.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoteConfigStatus {
    #[prost(bytes = "vec", tag = "1")]
    pub last_remote_config_hash: Vec<u8>,
    #[prost(enumeration = "RemoteConfigStatuses", tag = "2")]
    pub status: i32,
    #[prost(string, tag = "3")]
    pub error_message: String,
}

/// enum RemoteConfigStatuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RemoteConfigStatuses {
    Unset = 0,
    Applied = 1,
    Applying = 2,
    Failed = 3,
}

/// The last message of an agent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDisconnect {}

/// ServerToAgent: every response body of the HTTP transport.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerToAgent {
    #[prost(bytes = "vec", tag = "1")]
    pub instance_uid: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error_response: Option<ServerErrorResponse>,
    #[prost(message, optional, tag = "3")]
    pub remote_config: Option<AgentRemoteConfig>,
    /// [`server_flags`].
    #[prost(uint64, tag = "6")]
    pub flags: u64,
    #[prost(uint64, tag = "7")]
    pub capabilities: u64,
    #[prost(message, optional, tag = "8")]
    pub agent_identification: Option<AgentIdentification>,
}

/// The server could not process a request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerErrorResponse {
    /// enum ServerErrorResponseType: 0 unknown, 1 bad request, 2 unavailable.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub error_message: String,
    #[prost(message, optional, tag = "3")]
    pub retry_info: Option<RetryInfo>,
}

/// ServerErrorResponseType_Unavailable.
pub const ERROR_UNAVAILABLE: i32 = 2;

/// When to try again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(uint64, tag = "1")]
    pub retry_after_nanoseconds: u64,
}

/// A config offer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentRemoteConfig {
    #[prost(message, optional, tag = "1")]
    pub config: Option<AgentConfigMap>,
    /// Echoed back in RemoteConfigStatus.last_remote_config_hash.
    #[prost(bytes = "vec", tag = "2")]
    pub config_hash: Vec<u8>,
}

/// The server assigns the agent a new instance uid.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentIdentification {
    #[prost(bytes = "vec", tag = "1")]
    pub new_instance_uid: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes worked out by hand from the spec's field numbers and wire
    /// types: a wrong tag or type changes them.
    #[test]
    fn remote_config_status_encodes_as_the_spec_says() {
        let s = RemoteConfigStatus {
            last_remote_config_hash: vec![0xab, 0xcd],
            status: RemoteConfigStatuses::Failed as i32,
            error_message: "no".into(),
        };
        // field 1 LEN 2 | field 2 VARINT 3 | field 3 LEN 2 "no"
        assert_eq!(
            s.encode_to_vec(),
            [0x0a, 2, 0xab, 0xcd, 0x10, 3, 0x1a, 2, b'n', b'o']
        );
    }

    #[test]
    fn agent_to_server_header_fields() {
        let m = AgentToServer {
            instance_uid: vec![7; 16],
            sequence_num: 5,
            capabilities: capabilities::REPORTS_STATUS | capabilities::REPORTS_REMOTE_CONFIG,
            health: Some(ComponentHealth {
                healthy: true,
                start_time_unix_nano: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let b = m.encode_to_vec();
        assert_eq!(&b[..2], [0x0a, 16]);
        // sequence_num: field 2 varint; capabilities: field 4 varint 0x1001
        assert_eq!(&b[18..20], [0x10, 5]);
        assert_eq!(&b[20..23], [0x20, 0x81, 0x20]);
        // health: field 5 LEN; healthy field 1 varint 1; start fixed64 (wire 1)
        assert_eq!(&b[23..], [0x2a, 11, 0x08, 1, 0x11, 1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn server_to_agent_with_remote_config_decodes() {
        // instance_uid(1) = [1], remote_config(3) = { config(1) = { map(1) =
        // { key(1)="", value(2)={ body(1)="x" } } }, config_hash(2)=[9] },
        // flags(6)=1, and an unknown field 99 (varint) that must be skipped.
        let entry = [0x0a, 0, 0x12, 3, 0x0a, 1, b'x'];
        let mut map = vec![0x0a, entry.len() as u8];
        map.extend(entry);
        let mut rc = vec![0x0a, map.len() as u8];
        rc.extend(map);
        rc.extend([0x12, 1, 9]);
        let mut b = vec![0x0a, 1, 1, 0x1a, rc.len() as u8];
        b.extend(rc);
        b.extend([0x30, 1, 0x98, 0x06, 1]);
        let m = ServerToAgent::decode(b.as_slice()).unwrap();
        assert_eq!(m.flags, server_flags::REPORT_FULL_STATE);
        let rc = m.remote_config.unwrap();
        assert_eq!(rc.config_hash, [9]);
        assert_eq!(rc.config.unwrap().config_map[""].body, b"x");
    }
}
