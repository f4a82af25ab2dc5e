//! Network-namespace helpers the xdp and tc tests share: run code inside a
//! test namespace, and count the tc programs attached to a device there.

use tapio_integration::NetNs;

/// Run `f` on a thread inside network namespace `ns` (netlink sockets and
/// interface names resolve in the calling thread's namespace).
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
            // SAFETY: setns on this thread only, with an fd we own.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// tc programs named `prog` on `dev` in `ns` (direction `dir`): tcx links
/// (asked through aya: this bpftool predates tcx) plus clsact filters (`tc
/// filter show`, which prints the filter's name).
pub fn tc_progs(ns: &NetNs, dev: &str, dir: aya::programs::TcAttachType, prog: &str) -> usize {
    // The kernel keeps 15 bytes of a program's name.
    let short = &prog[..prog.len().min(15)];
    let tcx = in_ns(&ns.name, || {
        aya::programs::SchedClassifier::query_tcx(dev, dir)
            .map(|(_, progs)| {
                progs
                    .iter()
                    .filter(|p| p.name_as_str() == Some(short))
                    .count()
            })
            .unwrap_or(0)
    });
    let which = match dir {
        aya::programs::TcAttachType::Ingress => "ingress",
        _ => "egress",
    };
    let out = ns
        .command("tc")
        .args(["filter", "show", "dev", dev, which])
        .output()
        .expect("tc");
    let clsact = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == prog))
        .count();
    tcx + clsact
}
