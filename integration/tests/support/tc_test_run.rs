//! The tc probe's programs loaded as the agent loads them but not
//! attached, for `BPF_PROG_TEST_RUN` (the tc and pktfuzz tests) or for a
//! test to attach itself: the real object with its default config and an
//! optional policy put in force through the agent's own map writer.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use std::time::Duration;

pub struct TcTestRun {
    loaded: tapio::probes::Loaded,
}

impl TcTestRun {
    /// Load the tc object; with `policy`, apply it as the agent would.
    pub fn load(policy: Option<&tapio::config::TcPolicy>) -> Self {
        let ring = tapio::probes::RingConfig::new(4096, Duration::ZERO);
        let btf = aya::Btf::from_sys_fs().ok();
        let (mut loaded, names) = tapio::probes::tc::load(
            &tapio::config::TcProbe::default(),
            &tapio::config::EncryptedDns::default(),
            ring,
            btf.as_ref(),
            false,
        )
        .expect("load tc object");
        if let Some(policy) = policy {
            let mut shared =
                tapio::probes::tc::Shared::new(&mut loaded, std::sync::Arc::new(names))
                    .expect("maps");
            shared.apply(policy).expect("apply policy");
        }
        Self { loaded }
    }

    /// Run program `prog` (`PROG_INGRESS`, `PROG_EGRESS`) over `frame`:
    /// its return value and the frame as it left (`out` is the buffer,
    /// reused by callers that run many frames).
    pub fn run_into(&mut self, prog: &str, frame: &[u8], out: &mut [u8]) -> (u32, usize) {
        let p: &mut SchedClassifier = self
            .loaded
            .ebpf
            .program_mut(prog)
            .expect("tc program")
            .try_into()
            .expect("a classifier");
        let mut o = TestRunOptions::new();
        o.data_in = Some(frame);
        o.data_out = Some(out);
        match p.test_run(o) {
            Ok(r) => (r.return_value, r.data_size_out as usize),
            Err(err) => panic!("BPF_PROG_TEST_RUN: {err} for a {}-byte frame", frame.len()),
        }
    }

    /// [`run_into`](Self::run_into) with a fresh buffer: the return value
    /// and the frame as it left.
    pub fn run(&mut self, prog: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 64];
        let (rv, n) = self.run_into(prog, frame, &mut out);
        out.truncate(n);
        (rv, out)
    }

    /// The loaded object, for the tests that read the probe's maps.
    pub fn loaded(&mut self) -> &mut tapio::probes::Loaded {
        &mut self.loaded
    }
}
