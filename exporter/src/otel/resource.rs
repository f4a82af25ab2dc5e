//! The OTLP resource every signal carries.

use super::{kv_bool, kv_f64, kv_int, kv_str, names::attr};
use crate::config::AttrValue;
use opentelemetry_proto::tonic::{common::v1::KeyValue, resource::v1::Resource};

/// `host.id` per semconv: the machine id, when the host has one.
fn host_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn os_version() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Built-ins first, then the configured/environment attributes, which
/// replace a built-in of the same key.
pub fn build(configured: &[(String, AttrValue)]) -> Resource {
    let mut attrs: Vec<KeyValue> = vec![
        kv_str(attr::SERVICE_NAME, "tapio"),
        kv_str(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        kv_str(attr::OS_TYPE, "linux"),
    ];
    if let Ok(h) = hostname::get() {
        attrs.push(kv_str(attr::HOST_NAME, h.to_string_lossy()));
    }
    if let Some(id) = host_id() {
        attrs.push(kv_str(attr::HOST_ID, id));
    }
    if let Some(v) = os_version() {
        attrs.push(kv_str(attr::OS_VERSION, v));
    }
    for (k, v) in configured {
        attrs.retain(|a| &a.key != k);
        attrs.push(match v {
            AttrValue::Bool(b) => kv_bool(k, *b),
            AttrValue::Int(i) => kv_int(k, *i),
            AttrValue::Double(d) => kv_f64(k, *d),
            AttrValue::String(s) => kv_str(k, s.clone()),
        });
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn get<'a>(r: &'a Resource, k: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn configured_attributes_replace_builtins() {
        let r = build(&[
            ("service.name".into(), AttrValue::String("edge".into())),
            ("replicas".into(), AttrValue::Int(3)),
        ]);
        assert_eq!(
            get(&r, "service.name"),
            Some(&Value::StringValue("edge".into()))
        );
        assert_eq!(get(&r, "replicas"), Some(&Value::IntValue(3)));
        assert!(get(&r, "service.version").is_some());
        assert!(get(&r, "host.name").is_some());
        assert_eq!(
            r.attributes
                .iter()
                .filter(|a| a.key == "service.name")
                .count(),
            1
        );
    }
}
