//! The config/policy YAML loader and the collector-YAML reader, over any
//! text: a config file, a watched file caught half-written, an OpAMP
//! server's remote policy, a collector's own config
//! (`--collector-config`).
//!
//! For a text Tapio accepts, everything done with it at start must work
//! too: resolution against an environment (`OTEL_*` unset), compiling each
//! packet and LSM policy into map contents, and the effective-config YAML
//! Tapio reports (OpAMP `EffectiveConfig`) must read back as the same
//! config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use tapio::config;
use tapio::probes::{lsm, xdp};

fuzz_target!(|data: &[u8]| {
    // Config files are read as UTF-8 text (`read_to_string`).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = config::collector::from_collector_yaml(text);
    let Ok(cfg) = config::parse(text) else {
        return;
    };
    let _ = cfg.resolve(&|_| None);
    let _ = xdp::compile(&cfg.probes.xdp.policy);
    let available: Vec<u32> = (0..32).collect();
    let why = BTreeMap::new();
    let containers = BTreeMap::new();
    let env = lsm::Env {
        available: &available,
        why_unavailable: &why,
        // No cgroup tree and no files named: the compile step itself, not
        // the host's paths, is under test (paths that exist are stat()ed).
        cgroup_root: None,
        config_path: None,
        binary: None,
        containers: &containers,
    };
    let _ = lsm::compile(&cfg.probes.lsm.policy, &env);
    let yaml = serde_yaml_ng::to_string(&cfg).expect("an accepted config renders");
    match config::parse(&yaml) {
        Ok(back) => assert!(
            back == cfg,
            "the rendered config reads back differently:\n{yaml}"
        ),
        Err(e) => panic!("the rendered config is refused: {e}\n{yaml}"),
    }
});
