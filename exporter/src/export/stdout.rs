//! OTLP-JSON on stdout: one export request per line (the file exporter's
//! format), so `jq`, Vector's `exec` source or a collector's `otlpjsonfile`
//! receiver can read it.

use super::sink::{Accepted, ExportError, Payload};
use std::io::Write;

#[derive(Clone, Default)]
pub struct StdoutSink;

impl StdoutSink {
    pub async fn send(&self, p: &Payload) -> Result<Accepted, ExportError> {
        // OTLP-JSON is printed from the messages: pre-encoded requests are
        // decoded back first (stdout is for people and pipes, not the
        // record rate the protobuf sinks are built for).
        let decoded;
        let p = match p {
            Payload::Encoded(e) => {
                decoded = e
                    .decode()
                    .map_err(|err| ExportError::permanent(format!("decoding a request: {err}")))?;
                &decoded
            }
            other => other,
        };
        let line = match p {
            Payload::Logs(r) => serde_json::to_vec(r),
            Payload::Traces(r) => serde_json::to_vec(r),
            Payload::Metrics(r) => serde_json::to_vec(r),
            Payload::Encoded(_) => Ok(Vec::new()),
        }
        .map_err(|e| ExportError::permanent(format!("JSON encoding: {e}")))?;
        // One write per line under the lock, so lines never interleave.
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&line)
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush())
        })
        .await
        .map_err(|e| ExportError::permanent(format!("stdout writer: {e}")))?
        // A closed stdout (EPIPE) will not come back.
        .map_err(|e| ExportError::permanent(format!("stdout: {e}")))?;
        Ok(Accepted::default())
    }
}
