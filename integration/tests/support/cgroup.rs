//! A cgroup of the test's own for enforcement tests (shared by the test
//! files that include it with `#[path]`).
//!
//! Not every including test uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A cgroup v2 directory of the test's own, removed on drop.
pub struct TestCgroup {
    pub path: std::path::PathBuf,
    /// The path relative to the cgroup2 mount, as rules name it.
    pub rel: String,
}

impl TestCgroup {
    pub fn new(tag: &str) -> Self {
        Self::at(format!("tapio-lsm-{tag}-{}", std::process::id()))
    }

    /// A cgroup at `rel` below the cgroup2 root (its parent must exist).
    pub fn at(rel: String) -> Self {
        let root = tapio::probes::cgroup2_root().expect("cgroup2 mount");
        let path = std::path::Path::new(&root).join(&rel);
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).expect("create test cgroup");
        Self { path, rel }
    }

    /// Run `python3 -c script` inside the cgroup; returns its stdout.
    pub fn python(&self, script: &str) -> String {
        self.run(tapio_integration::python3(), &["-c", script])
    }

    pub fn run(&self, prog: &str, args: &[&str]) -> String {
        let procs = self.path.join("cgroup.procs");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
            .arg("sh")
            .arg(prog)
            .args(args)
            .output()
            .expect("run in cgroup");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A python script that connects to each 127.0.0.1 port and prints its pid
/// and, per port, `ok`, `EPERM` or `errN`.
pub fn connect_script(ports: &[u16]) -> String {
    let list = ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "import socket,os\nout=[str(os.getpid())]\nfor p in ({list},):\n  s=socket.socket()\n  try:\n    s.connect(('127.0.0.1',p)); out.append('ok')\n  except PermissionError: out.append('EPERM')\n  except OSError as e: out.append('err%d' % e.errno)\nprint(' '.join(out))"
    )
}

/// A loopback listener on a free port, for connect rules to name.
pub fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

/// A v1 memory cgroup below the test's own (so the limits above it hold too), for
/// OOM tests on hosts whose memory controller is still on cgroup v1.
pub fn v1_memcg(tag: &str) -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mount = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "memory"))
                .then(|| f[1].to_string())
        })
        .expect("no memory controller: neither cgroup v2's nor a v1 memory mount");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = own
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into());
    let dir = Path::new(&mount)
        .join(rel.trim_start_matches('/'))
        .join(format!("tapio-oom-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir(&dir);
    std::fs::create_dir(&dir).expect("create v1 memory cgroup");
    dir
}

/// The python3 interpreter's file itself, symlinks resolved (our symlinks
/// to it name processes; `python3` may be a link to `python3.11`).
pub fn real_python() -> PathBuf {
    std::fs::canonicalize(tapio_integration::python3()).expect("python3 is needed for this test")
}
