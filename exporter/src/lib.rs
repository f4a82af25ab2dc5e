//! Tapio: loads eBPF probes, turns what they see into OpenTelemetry signals,
//! and exports them over OTLP (or as OTLP-JSON on stdout).
//!
//! Data flow (see DESIGN.md §1): `probes` (load, attach, read ring buffers,
//! decode) → `enrich` (process, container, pod) → `otel` (map to OTLP
//! records) → `export` (bounded queues, batching, sinks). `telemetry` counts
//! everything that happens on the way, including every loss.

pub mod agent;
pub mod bpf_objects;
pub mod clock;
pub mod config;
pub mod dnsmsg;
pub mod enrich;
pub mod export;
pub mod features;
pub mod heap;
pub mod opamp;
pub mod otel;
pub mod policy;
pub mod probes;
pub mod prog_info;
pub mod reader;
pub mod reload;
pub mod supervise;
pub mod telemetry;
