//! Configuration: one serde model ([`model`]), validation that reports every
//! error with its key path and line, and resolution against the standard
//! `OTEL_*` environment variables ([`settings`]).

mod bytesize;
pub mod collector;
mod error;
mod location;
pub mod model;
pub mod settings;
pub mod trust;
mod validate;

pub use bytesize::ByteSize;
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use settings::{process_env, BatchSettings, OtlpSettings, Protocol, Settings, SinkSettings};
pub use validate::{check_endpoint, check_otlp_endpoint, unix_socket_path};

use std::path::Path;

/// Parse and validate YAML text. Every error carries its key path and, where
/// the key is in the text, its line.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    // An empty file (or only comments) is the default configuration.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Config::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let cfg: Config = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.location().map(|l| l.line());
            // serde_yaml_ng appends " at line X column Y"; we say it our way.
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            let path = if path == "." { String::new() } else { path };
            // ...and sometimes prefixes the path, which we print already.
            let msg = match msg.split_once(": ") {
                Some((pre, rest)) if !pre.is_empty() && path.starts_with(pre) => rest.to_string(),
                _ => msg,
            };
            return Err(ConfigErrors(vec![ConfigError {
                path,
                line,
                message: msg,
            }]));
        }
    };
    let mut errs = cfg.validate();
    if errs.is_empty() {
        return Ok(cfg);
    }
    let lines = location::key_lines(text);
    for e in &mut errs {
        e.line = location::line_of(&lines, &e.path);
    }
    Err(ConfigErrors(errs))
}

/// Read, parse and validate a file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            String::new(),
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    parse(&text)
}

/// [`load`] for the file Tapio runs and enforces from: refused, with the
/// reason, unless only root (or the user running Tapio) can change it or
/// swap it ([`trust`]).
pub fn load_trusted(path: &Path) -> Result<Config, ConfigErrors> {
    trust::check(path).map_err(|why| {
        ConfigErrors(vec![ConfigError::new(
            String::new(),
            format!("refused: {why}"),
        )])
    })?;
    load(path)
}

#[cfg(test)]
mod tests;
