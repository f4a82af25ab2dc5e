//! What an OpAMP server's answer reaches: the `ServerToAgent` protobuf
//! decoder, the choice of the policy file in a remote config map
//! (`opamp::policy_text`) and the reload path a remote policy takes
//! (`Policies::remote_received`: parse, validate, put in force on every
//! probe, report), then the effective config reported back. The same
//! calls, in the same order, as `opamp::Agent::handle`, without the
//! network exchange between them.
//!
//! Invariants: a remote policy is in force on every probe exactly when it
//! was accepted, and the effective config Tapio then reports reads back
//! as a valid config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::sync::{Arc, Mutex};
use tapio::config::Probes;
use tapio::opamp::{policy_text, proto::ServerToAgent};
use tapio::policy::{self, Policies, PolicyError, PolicyTarget};
use tapio::telemetry::Telemetry;

/// A probe that takes every policy and remembers the last one.
struct Probe {
    name: &'static str,
    last: Arc<Mutex<Option<Probes>>>,
}

impl PolicyTarget for Probe {
    fn probe(&self) -> &'static str {
        self.name
    }
    fn apply(&mut self, p: &Probes) -> Result<(), PolicyError> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = ServerToAgent::decode(data) else {
        return;
    };
    let Some(rc) = reply.remote_config else {
        return;
    };
    let t = Telemetry::new(0);
    let (emitter, _batches) =
        tapio::export::Emitter::standalone(&Default::default(), 16, 16, t.clone());
    let seen: Vec<Arc<Mutex<Option<Probes>>>> = (0..3).map(|_| Default::default()).collect();
    let targets: Vec<Box<dyn PolicyTarget>> = ["xdp", "lsm", "tc"]
        .into_iter()
        .zip(&seen)
        .map(|(name, last)| {
            Box::new(Probe {
                name,
                last: last.clone(),
            }) as Box<dyn PolicyTarget>
        })
        .collect();
    let mut policies = Policies::new(Default::default(), targets, t, emitter);
    let Ok(text) = policy_text(rc.config.as_ref()) else {
        return;
    };
    let before = policies.generation();
    let applied = policies.remote_received("fuzz", text.as_deref());
    if let (Ok(()), Some(text)) = (&applied, &text) {
        let want = policy::parse(text)
            .expect("an applied policy parses")
            .probes;
        for s in &seen {
            let got = s.lock().unwrap_or_else(|e| e.into_inner());
            // A probe already running this policy is not called again.
            if let Some(got) = got.as_ref() {
                assert!(got.policies_equal(&want));
            }
        }
    } else if applied.is_err() {
        assert_eq!(
            policies.generation(),
            before,
            "a refused policy changed what is in force"
        );
    }
    let yaml = policies.effective_yaml();
    if let Err(e) = policy::parse(&yaml) {
        panic!("the effective config Tapio reports is refused: {e}\n{yaml}");
    }
});
