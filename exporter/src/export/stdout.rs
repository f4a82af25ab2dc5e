//! OTLP-JSON on stdout: one export request per line (the file exporter's
//! format), so `jq`, Vector's `exec` source or a collector's `otlpjsonfile`
//! receiver can read it.

use super::sink::{Accepted, ExportError, Frame, Payload};
use std::{io::Write, sync::Arc};

enum Line {
    Frame(Arc<Frame>),
    Owned(Vec<u8>),
}

impl Line {
    fn bytes(&self) -> &[u8] {
        match self {
            Line::Frame(f) => &f.buf[f.at..],
            Line::Owned(v) => v,
        }
    }
}

fn json_error(e: serde_json::Error) -> ExportError {
    ExportError::permanent(format!("JSON encoding: {e}"))
}

#[derive(Clone, Default)]
pub struct StdoutSink;

impl StdoutSink {
    pub async fn send(&self, p: &Payload) -> Result<Accepted, ExportError> {
        // Logs and spans arrive written as OTLP/JSON by the probes' own
        // mappings; metrics (one request per interval) are messages.
        let line = match p {
            Payload::Json(e) => Line::Frame(e.frame.clone()),
            Payload::Logs(r) => Line::Owned(serde_json::to_vec(r).map_err(json_error)?),
            Payload::Traces(r) => Line::Owned(serde_json::to_vec(r).map_err(json_error)?),
            Payload::Metrics(r) => Line::Owned(serde_json::to_vec(r).map_err(json_error)?),
            Payload::Encoded(_) => {
                return Err(ExportError::permanent(
                    "a protobuf request reached the OTLP-JSON sink",
                ))
            }
        };
        // One write per line under the lock, so lines never interleave.
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(line.bytes())
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
