//! The one configuration model. Every field has a `///` doc (it is the
//! reference documentation), a default, and is validated in `validate.rs`.
//! Unknown keys are errors.
//!
//! Fields that an `OTEL_*` environment variable can also set are `Option`s:
//! `None` means "not in the file", so `settings.rs` can let the file win over
//! the environment and the environment win over the built-in default.

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, time::Duration};

use super::bytesize::ByteSize;

/// Tapio's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which probes run and how.
    pub probes: Probes,
    /// Where signals are sent. At most one exporter; with none (and no
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), OTLP-JSON lines go to stdout.
    pub exporters: Exporters,
    /// Batching and export intervals per signal.
    pub pipeline: Pipeline,
    /// Resource attributes added to every signal.
    pub resource: Resource,
    /// Services beside the pipeline, keyed like the collector's
    /// `extensions`.
    pub extensions: Extensions,
}

/// Services beside the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Extensions {
    /// Remote management over OpAMP (plain HTTP transport), keyed like the
    /// collector's `opamp` extension: Tapio reports its description,
    /// health and effective config, and takes `probes.*.policy` from the
    /// server's remote config. Off when absent.
    pub opamp: Option<OpampExtension>,
}

/// The OpAMP agent.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpampExtension {
    /// The OpAMP server.
    pub server: OpampServer,
    /// This agent's instance UID (a UUID, e.g.
    /// `01913a7e-6c4b-7cc2-8f0e-3b1c2d4e5f60`). Default: a new UUID v7 at
    /// every start.
    pub instance_uid: Option<String>,
    /// What Tapio tells the server it does.
    pub capabilities: OpampCapabilities,
    /// Extra attributes for the server's view of this agent.
    pub agent_description: OpampAgentDescription,
    /// Roll a remote policy back to the config file's policy when the
    /// server has not answered for this long while it is in force (a
    /// remote policy can cut Tapio off from its server). The rollback is
    /// logged and reported to the server as FAILED once it answers again;
    /// the same config is not re-applied. `0s`: never roll back.
    #[serde(with = "humantime_serde")]
    pub rollback_after_unreachable: Duration,
}

/// Default of `extensions.opamp.rollback_after_unreachable`: long enough
/// for a server restart, short enough to undo a policy that locked Tapio out.
pub const OPAMP_ROLLBACK_AFTER: Duration = Duration::from_secs(300);

impl Default for OpampExtension {
    fn default() -> Self {
        Self {
            server: OpampServer::default(),
            instance_uid: None,
            capabilities: OpampCapabilities::default(),
            agent_description: OpampAgentDescription::default(),
            rollback_after_unreachable: OPAMP_ROLLBACK_AFTER,
        }
    }
}

/// Where the OpAMP server is. Only the plain HTTP transport is supported.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpampServer {
    /// Poll the server over HTTP (required).
    pub http: Option<OpampHttp>,
}

/// OpAMP's plain HTTP transport: Tapio POSTs an AgentToServer message every
/// `polling_interval` (and at once when it has news) and reads the
/// server's ServerToAgent from the response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpampHttp {
    /// The server's OpAMP URL, e.g. `http://127.0.0.1:4320/v1/opamp`.
    pub endpoint: Option<String>,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
    /// How often Tapio polls when it has nothing to report.
    #[serde(with = "humantime_serde")]
    pub polling_interval: Duration,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS for `https` endpoints.
    pub tls: TlsConfig,
}

impl Default for OpampHttp {
    fn default() -> Self {
        Self {
            endpoint: None,
            headers: BTreeMap::new(),
            polling_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            tls: TlsConfig::default(),
        }
    }
}

/// Optional OpAMP capabilities (ReportsStatus, ReportsHealth and
/// ReportsRemoteConfig are always on).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpampCapabilities {
    /// Take `probes.*.policy` from the server's remote config. `false`:
    /// report only.
    pub accepts_remote_config: bool,
    /// Send the effective configuration (exporter headers redacted).
    pub reports_effective_config: bool,
}

impl Default for OpampCapabilities {
    fn default() -> Self {
        Self {
            accepts_remote_config: true,
            reports_effective_config: true,
        }
    }
}

/// Additions to the AgentDescription Tapio sends (`service.*` identify it;
/// the other resource attributes are sent as non-identifying).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpampAgentDescription {
    /// Added to the non-identifying attributes.
    pub non_identifying_attributes: BTreeMap<String, String>,
}

/// Per-probe settings. A probe left out runs with its defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Probes {
    /// Process lifecycle: `process.exec`, `process.exit`, fork.
    pub process: ProcessProbe,
    /// TCP connections: `tcp.connect` spans, `network.connection.close`
    /// logs, `tapio.tcp.connect.duration`.
    pub network: NetworkProbe,
    /// DNS over UDP and TCP: `dns.query` spans, `dns.lookup.duration`.
    pub dns: DnsProbe,
    /// XDP packet filter on chosen interfaces: block/allow lists, rate
    /// limits, SYN-flood and DNS-amplification defence, `tapio.xdp.*`.
    pub xdp: XdpProbe,
    /// Policy enforcement: deny or audit connect/bind/socket/device access
    /// (cgroup hooks, any kernel) and file open, exec, ptrace, module and
    /// BPF loads (BPF LSM where the kernel allows it).
    pub lsm: LsmProbe,
    /// Security observability: `security.*` log records (credentials,
    /// capabilities, code injection, module/BPF loads, watched files).
    pub security: SecurityProbe,
    /// TC classifier on chosen interfaces: L7 protocol detection, traffic
    /// counters, load balancing, circuit breaking, chaos (`tapio.tc.*`).
    pub tc: TcProbe,
    /// Kernel events: `kernel.oom_kill` logs and `tapio.oom.kills`.
    pub kernel: KernelProbe,
    /// systemd unit lifecycle from the units' cgroups:
    /// `systemd.unit.start`/`stop` logs, `tapio.systemd.unit.processes`.
    pub systemd: SystemdProbe,
    /// etcd: WAL sync latency (`tapio.etcd.wal_fsync.duration`),
    /// `etcd.wal_fsync` spans for slow syncs, and client request latency
    /// (`tapio.etcd.request.duration`).
    pub etcd: EtcdProbe,
    /// Network namespaces and CNI plugins: `network.namespace.*`,
    /// `network.interface.*`, `network.address.*`, `network.route.*`,
    /// `cni.plugin.exec` logs (a pod's network setup as a timeline).
    pub netns: NetnsProbe,
    /// Which tasks the process, network and dns probes record (absent:
    /// every task on the node).
    pub scope: ProbeScope,
}

/// `probes.scope`: observe one workload's cgroup v2 subtree only. Decided
/// in the kernel before a record is written, so tasks outside it cost no
/// ring space and no export slot. Fixed at start (like every setting but
/// policies, a change takes effect at the next restart).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeScope {
    /// A cgroup v2 directory: a path relative to the cgroup2 mount
    /// (`kubepods.slice`), a cgroup path as `/proc/<pid>/cgroup` prints it
    /// (`/system.slice/foo.service`), or the directory itself
    /// (`/sys/fs/cgroup/kubepods.slice`). Tasks in it or below it are
    /// recorded. It must exist when Tapio starts.
    pub cgroup: Option<String>,
}

/// The etcd probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdProbe {
    /// Run this probe (see `probes.process.enabled`).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB). A record
    /// is 160 bytes.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// etcd processes to watch, by executable name or path. The kernel
    /// matches the process name (comm): the file name cut to 15 bytes. At
    /// most 4.
    pub executables: Vec<String>,
    /// WAL syncs at least this slow also become `etcd.wal_fsync` spans
    /// (every one is in the histogram). etcd warns from 1 s; its docs call
    /// a p99 over 10 ms slow.
    #[serde(with = "humantime_serde")]
    pub slow_threshold: Duration,
    /// etcd's client ports: the local TCP ports of connections a watched
    /// process accepts, whose gRPC requests are timed into
    /// `tapio.etcd.request.duration` (plaintext h2c only). Empty (the
    /// default) turns request timing off: its programs run on every
    /// `read`/`write` on the host, a cost only an etcd node should pay
    /// (etcd's own is 2379). At most 4.
    pub client_ports: Vec<u16>,
}

impl Default for EtcdProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(64 * 1024),
            wakeup_interval: Duration::from_millis(100),
            executables: vec!["etcd".into()],
            slow_threshold: Duration::from_millis(100),
            client_ports: Vec::new(),
        }
    }
}

/// The security probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityProbe {
    /// Run this probe (see `probes.process.enabled`).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB). A record
    /// is 392 bytes.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// `security.credentials.change`: changes of uids, gids or
    /// capabilities (every path through commit_creds where fentry or
    /// kprobes work; else set*id syscalls and execs).
    pub credentials: bool,
    /// `security.capability.use` (fexit or kprobes on `cap_capable`, else
    /// the `capability/cap_capable` tracepoint, Linux 6.14+; `tapio probes`
    /// says when none works). Off by default: one record per process and
    /// capability is still one record per new process on most nodes with
    /// the tracepoint, because every mmap accounting check
    /// (`vm_enough_memory`) tests CAP_SYS_ADMIN and the tracepoint cannot
    /// tell that NOAUDIT check from a real use (the function hooks skip it).
    pub capabilities: bool,
    /// How credential changes and capability checks are hooked: `auto`
    /// (the best the kernel accepts: fentry/fexit, then kprobes, then
    /// tracepoints), or only `fentry`, `kprobe` or `tracepoint` (set*id/exec
    /// syscall pairs; the cap_capable tracepoint). `tapio probes` shows
    /// which the kernel takes.
    pub attach: SecurityAttach,
    /// How the syscalls of the other signals (set*id/exec where no
    /// commit_creds hook loads, ptrace, process_vm_writev, mmap/mprotect,
    /// bpf, module loads, watched-file operations) are hooked: `auto` (one
    /// tracepoint pair per hooked syscall, else one `tp_btf/sys_enter` +
    /// `sys_exit` pair dispatching on the syscall number), or only
    /// `per_syscall` or `dispatch`. `tapio probes` shows which the kernel
    /// takes.
    pub syscalls: SecuritySyscalls,
    /// `security.ptrace`, `security.process_vm_writev`,
    /// `security.memfd.exec`, `security.memory.wx`.
    pub code_injection: bool,
    /// `security.module.load`.
    pub modules: bool,
    /// `security.bpf.load` (BPF programs loaded by other processes).
    pub bpf: bool,
    /// Absolute paths of files and directories whose changes become
    /// `security.file.change` records. A directory covers everything under
    /// it (up to `watch_depth` levels, same filesystem). Resolved to inodes
    /// when Tapio starts; a path missing then is skipped with a warning.
    pub watch_paths: Vec<String>,
    /// Levels of parent directories checked above a changed file when a
    /// watched directory should cover its subtree (0 to 16).
    pub watch_depth: u32,
    /// Writes by one process to one watched file within this window become
    /// one record (the next one counts the writes folded into it).
    #[serde(with = "humantime_serde")]
    pub write_dedup_window: Duration,
}

impl Default for SecurityProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(1024 * 1024),
            wakeup_interval: Duration::from_millis(100),
            credentials: true,
            capabilities: false,
            attach: SecurityAttach::Auto,
            syscalls: SecuritySyscalls::Auto,
            code_injection: true,
            modules: true,
            bpf: true,
            watch_paths: Vec::new(),
            watch_depth: 8,
            write_dedup_window: Duration::from_secs(1),
        }
    }
}

/// How the security probe hooks syscalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecuritySyscalls {
    /// Best first: per-syscall tracepoints, then the dispatcher.
    Auto,
    /// One `tp_btf/sys_enter` + `sys_exit` pair; a syscall of no configured
    /// family costs one array lookup.
    Dispatch,
    /// One `syscalls/sys_enter_*`/`sys_exit_*` tracepoint per syscall.
    PerSyscall,
}

/// The security probe's function hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityAttach {
    /// Best first: fentry/fexit, kprobe, tracepoint.
    Auto,
    /// fentry/commit_creds, fexit/cap_capable (BPF trampolines).
    Fentry,
    /// kprobe/commit_creds, kprobe+kretprobe/cap_capable.
    Kprobe,
    /// Syscall tracepoints and the cap_capable tracepoint only.
    Tracepoint,
}

impl Config {
    /// This configuration with every live (`policy`) section emptied: two
    /// configs that differ only in policy compare equal.
    pub fn without_policy(&self) -> Config {
        let mut c = self.clone();
        c.probes.xdp.policy = XdpPolicy::default();
        c.probes.lsm.policy = LsmPolicy::default();
        c.probes.tc.policy = TcPolicy::default();
        c
    }
}

impl Probes {
    /// Whether every probe's live policy is the same in both.
    pub fn policies_equal(&self, other: &Probes) -> bool {
        self.xdp.policy == other.xdp.policy
            && self.lsm.policy == other.lsm.policy
            && self.tc.policy == other.tc.policy
    }
}

/// The lsm probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsmProbe {
    /// Run this probe. By default it runs when `policy.rules` has rules.
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes for decisions (power of two).
    pub ring_buffer_size: ByteSize,
    /// Longest a decision waits in the ring buffer (denials wake at once).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// What happens to enforcement when Tapio exits or dies. `release`
    /// (fail-open): the programs detach with the process. `keep`
    /// (fail-closed): their links are pinned under `pin_dir` and keep
    /// enforcing the last policy until a new Tapio replaces them or the
    /// pins are removed.
    pub on_exit: OnExit,
    /// bpffs directory for `keep`'s pinned links.
    pub pin_dir: String,
    /// The rules. Live: edits apply without reloading programs; an invalid
    /// file keeps the previous rules.
    pub policy: LsmPolicy,
}

impl Default for LsmProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(256 * 1024),
            wakeup_interval: Duration::from_millis(100),
            on_exit: OnExit::Release,
            pin_dir: "/sys/fs/bpf/tapio/lsm".into(),
            policy: LsmPolicy::default(),
        }
    }
}

/// Enforcement after Tapio is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Detach with the process (fail-open).
    Release,
    /// Stay attached through pinned links (fail-closed).
    Keep,
}

/// Enforcement rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsmPolicy {
    /// Checked by map lookup, not in turn: the most specific match wins
    /// (exact port before any port, the file before its directories);
    /// rules with the same match apply in this order.
    pub rules: Vec<LsmRule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LsmRule {
    /// Unique; the `tapio.lsm.rule` attribute of its decisions.
    pub name: String,
    /// Where it is enforced.
    pub hook: LsmHook,
    /// `deny` (EPERM) or `audit` (allow and report).
    pub action: LsmAction,
    /// What it applies to; every condition given must hold.
    #[serde(rename = "match", default)]
    pub matches: LsmMatch,
}

/// Enforcement points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LsmHook {
    /// connect() and unconnected UDP sends (cgroup hooks).
    Connect,
    /// bind() (cgroup hooks).
    Bind,
    /// socket() by family and type (cgroup hook).
    SocketCreate,
    /// Device node access (cgroup hook).
    Device,
    /// Opening a file (BPF LSM).
    FileOpen,
    /// Executing a file (BPF LSM).
    Exec,
    /// ptrace of a process running a given executable (BPF LSM).
    Ptrace,
    /// Kernel module loading (BPF LSM).
    ModuleLoad,
    /// BPF program loading by processes other than Tapio (BPF LSM).
    Bpf,
    /// Changing a protected file or directory: open for writing, truncate,
    /// rename (from or onto it), unlink/rmdir, chmod, chown (BPF LSM
    /// `path_*` hooks, `file_truncate`, `file_open`). Narrow it with
    /// `operations`.
    FileModify,
}

/// What a `file_modify` rule stops or audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOperation {
    /// open() for writing (O_WRONLY/O_RDWR).
    Write,
    /// truncate(), ftruncate(), open(O_TRUNC).
    Truncate,
    /// rename() of the file, or onto it.
    Rename,
    /// unlink() of a file, rmdir() of a directory.
    Unlink,
    /// chmod() and friends.
    Chmod,
    /// chown() and friends.
    Chown,
}

impl FileOperation {
    /// The config spelling, also `tapio.security.file.operation`.
    pub fn name(self) -> &'static str {
        match self {
            FileOperation::Write => "write",
            FileOperation::Truncate => "truncate",
            FileOperation::Rename => "rename",
            FileOperation::Unlink => "unlink",
            FileOperation::Chmod => "chmod",
            FileOperation::Chown => "chown",
        }
    }

    pub const ALL: [FileOperation; 6] = [
        FileOperation::Write,
        FileOperation::Truncate,
        FileOperation::Rename,
        FileOperation::Unlink,
        FileOperation::Chmod,
        FileOperation::Chown,
    ];
}

/// Deny or audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LsmAction {
    Deny,
    Audit,
}

/// Conditions of a rule. Which ones a hook takes is checked.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsmMatch {
    /// connect/bind: destination (connect) or local (bind) CIDR.
    pub address: Option<ipnet::IpNet>,
    /// connect/bind: port (absent: any).
    pub port: Option<u16>,
    /// connect/bind: `tcp` or `udp` (absent: any).
    pub protocol: Option<String>,
    /// socket_create: `inet` or `inet6` (the cgroup hook sees no other
    /// family).
    pub family: Option<String>,
    /// socket_create: `stream`, `dgram`, `raw` or a number.
    pub socket_type: Option<String>,
    /// file_open/exec/file_modify: this file; ptrace: processes running it.
    pub path: Option<String>,
    /// file_open/exec/ptrace/file_modify: every file under this directory.
    pub path_prefix: Option<String>,
    /// file_open/exec/ptrace/file_modify: the file with this inode number
    /// (instead of `path`; e.g. a file with no stable name). Inode numbers
    /// repeat across filesystems: give `device` too.
    pub inode: Option<u64>,
    /// device: `c` or `b`, major and minor (`c 1:3`, `c 1:*`). With
    /// `inode`: the filesystem's `MAJOR:MINOR` (as in
    /// /proc/self/mountinfo; absent: any filesystem).
    pub device: Option<String>,
    /// file_modify: the operations it applies to (absent: all of `write`,
    /// `truncate`, `rename`, `unlink`, `chmod`, `chown`).
    pub operations: Vec<FileOperation>,
    /// device: accesses it applies to, any of `r`, `w`, `m` (absent: any).
    pub access: Option<String>,
    /// Only this uid.
    pub uid: Option<u32>,
    /// Only processes in this cgroup (v2 path, absolute or relative to the
    /// cgroup2 mount) or below it.
    pub cgroup: Option<String>,
    /// Only processes with this name (comm, up to 15 bytes).
    pub comm: Option<String>,
    /// Only processes of this container: its full 64-hex-digit id (Docker,
    /// containerd, CRI-O, Podman), found in the cgroup names the runtime
    /// gives it. Cgroups that exist when the policy is applied are found
    /// then; cgroups created later are recognised by the kernel as they
    /// are made (cgroup_mkdir tracepoint), before a process can run there.
    pub container_id: Option<String>,
    /// Apply to Tapio itself too (it is exempt otherwise, so it cannot lock
    /// itself out).
    pub include_tapio: bool,
}

/// The xdp probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpProbe {
    /// Run this probe. It needs `interfaces`: with none it does not run,
    /// and `enabled: true` without interfaces is an error.
    pub enabled: Option<bool>,
    /// Interfaces to filter (ingress), by name.
    pub interfaces: Vec<String>,
    /// `auto` attaches in the driver (native) where it supports XDP and
    /// falls back to generic (skb) mode; `native` and `generic` insist.
    pub mode: XdpMode,
    /// Ring-buffer size in bytes for auto-block events (power of two).
    pub ring_buffer_size: ByteSize,
    /// Longest an auto-block event waits in the ring buffer.
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// The filter policy. Live: changing it in the file applies it without
    /// reloading the program; an invalid file keeps the previous policy.
    pub policy: XdpPolicy,
}

impl Default for XdpProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            interfaces: Vec::new(),
            mode: XdpMode::Auto,
            ring_buffer_size: ByteSize(64 * 1024),
            wakeup_interval: Duration::from_millis(100),
            policy: XdpPolicy::default(),
        }
    }
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native where the driver supports it, generic otherwise.
    Auto,
    /// In the driver; fail if it cannot.
    Native,
    /// In the kernel's generic receive path (any interface, slower).
    Generic,
}

/// What the XDP filter does with inbound packets, in this order: allow
/// list (pass), block list (drop), active auto-blocks (drop), replies to
/// flows this host opened (pass), DNS-amplification check, SYN-flood
/// check, per-source rate limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpPolicy {
    /// Source CIDRs (IPv4 or IPv6) always passed, before any other check.
    pub allow: Vec<ipnet::IpNet>,
    /// Source CIDRs dropped.
    pub block: Vec<ipnet::IpNet>,
    /// Per-source packet rate limit (all packets that are not replies to
    /// flows this host opened). Off when absent.
    pub rate_limit: Option<RateLimit>,
    /// SYN-flood defence. Off when absent.
    pub syn_flood: Option<SynFlood>,
    /// Drop DNS responses nobody asked for. Off when absent.
    pub dns_amplification: Option<DnsAmplification>,
}

/// A token bucket per source address.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained packets per second from one source.
    pub packets_per_second: u32,
    /// Packets a source may send at once above the sustained rate.
    pub burst: u32,
}

/// SYN-flood detection and mitigation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynFlood {
    /// SYNs per second one source may send; a source over it is blocked
    /// for `block_for` (a `security.ddos_mitigation` log when the block
    /// starts and when it ends).
    pub per_source: u32,
    /// SYNs per second all sources together may send to one destination
    /// address; SYNs over it are dropped (no source is blocked). 0 = off.
    pub per_destination: u32,
    /// How long an auto-block lasts.
    #[serde(with = "humantime_serde")]
    pub block_for: Duration,
}

impl Default for SynFlood {
    fn default() -> Self {
        Self {
            per_source: 100,
            per_destination: 0,
            block_for: Duration::from_secs(60),
        }
    }
}

/// DNS-amplification defence: an inbound UDP packet from port 53 passes
/// only if this host sent a query to that server, from that port, with
/// that DNS id, within `query_window`, and is at most
/// `max_response_size` bytes of UDP payload.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsAmplification {
    /// How long after a query its response is accepted.
    #[serde(with = "humantime_serde")]
    pub query_window: Duration,
    /// Largest UDP payload accepted from port 53, in bytes (0 = any size).
    pub max_response_size: u32,
}

impl Default for DnsAmplification {
    fn default() -> Self {
        Self {
            query_window: Duration::from_secs(5),
            max_response_size: 4096,
        }
    }
}

/// The tc probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcProbe {
    /// Run this probe. It needs `interfaces`: with none it does not run,
    /// and `enabled: true` without interfaces is an error.
    pub enabled: Option<bool>,
    /// Interfaces to attach to (ingress and egress), by name; tcx links
    /// where the kernel has them (6.6+), clsact filters otherwise.
    /// `NETNS/IFNAME` names an interface inside the network namespace
    /// `/run/netns/NETNS` (as `ip netns` creates them).
    pub interfaces: Vec<String>,
    /// Ring-buffer size in bytes for `network.flow.classified` records
    /// (power of two). A record is 240 bytes.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// Emit a `network.flow.classified` log for every flow whose protocol
    /// is decided (with the TLS server name). Counters are kept either way.
    pub flow_logs: bool,
    /// Load balancing, circuit breaking and chaos. Live: changing it in
    /// the file applies it without reloading the programs; an invalid file
    /// keeps the previous policy.
    pub policy: TcPolicy,
}

impl Default for TcProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            interfaces: Vec::new(),
            ring_buffer_size: ByteSize(256 * 1024),
            wakeup_interval: Duration::from_millis(100),
            flow_logs: false,
            policy: TcPolicy::default(),
        }
    }
}

/// What the tc programs steer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcPolicy {
    /// Virtual services: new flows arriving (ingress) for `address` are
    /// sent to a backend chosen by weight; replies leave (egress) from the
    /// virtual address. IPv4 only.
    pub services: Vec<TcService>,
    /// Backend ejection after connection failures. Off when absent.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Fault injection. Every experiment ends by itself.
    pub chaos: Chaos,
}

/// One virtual service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcService {
    /// Name used in metric attributes (`tapio.tc.service`).
    pub name: String,
    /// Virtual `IPv4:port` clients connect to.
    pub address: std::net::SocketAddr,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: L4Protocol,
    /// Where flows go (1 to 16 backends).
    pub backends: Vec<TcBackend>,
}

/// One backend of a virtual service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcBackend {
    /// Real `IPv4:port`.
    pub address: std::net::SocketAddr,
    /// Share of new flows relative to the other backends (1 to 1000).
    #[serde(default = "default_weight")]
    pub weight: u16,
}

fn default_weight() -> u16 {
    1
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// Circuit breaker, per backend: `max_failures` connection failures in a
/// row (a RST answering the SYN, or no SYN-ACK before the client
/// retransmits its SYN) open it and new flows skip the backend; after
/// `cool_down` it is half-open (flows go to it again), and the next
/// success closes it or the next failure opens it again.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Failures in a row that open the breaker.
    pub max_failures: u32,
    /// How long an open breaker keeps the backend out.
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            max_failures: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

/// Fault injection.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chaos {
    /// Kill switch: `true` stops every experiment at once.
    pub disabled: bool,
    /// Experiments (at most 16).
    pub experiments: Vec<ChaosExperiment>,
}

/// One fault-injection experiment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosExperiment {
    /// Name used in metric attributes (`tapio.tc.experiment`).
    pub name: String,
    /// Packets to or from this port (0 or absent: any port).
    #[serde(default)]
    pub port: u16,
    /// `tcp` or `udp`; absent: both.
    #[serde(default)]
    pub protocol: Option<L4Protocol>,
    /// `ingress`, `egress` or `both` (default).
    #[serde(default)]
    pub direction: ChaosDirection,
    /// Probability (0.0-1.0) of dropping a matching packet.
    #[serde(default)]
    pub loss: f64,
    /// Delay added to matching egress packets (EDT; needs the fq qdisc,
    /// refused where the kernel has no sch_fq).
    #[serde(default, with = "humantime_serde")]
    pub latency: Duration,
    /// How long the experiment runs after it is applied (1s to 24h). An
    /// unchanged experiment keeps its deadline across reloads.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Which packets an experiment touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChaosDirection {
    /// Received packets.
    Ingress,
    /// Transmitted packets.
    Egress,
    /// Both.
    #[default]
    Both,
}

/// The dns probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsProbe {
    /// Run this probe (see `probes.process.enabled`).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB). A packet
    /// record is 616 bytes.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// DNS server ports to trace (1 to 16 of them).
    pub ports: Vec<u16>,
    /// A query with no response after this long ends as an error span.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Fraction (0.0–1.0) of NOERROR lookups exported as spans. Errors,
    /// NXDOMAIN, timeouts and slow lookups are always exported; the
    /// histogram counts every lookup.
    pub sample_rate: f64,
    /// Lookups at least this slow are always exported as spans.
    #[serde(with = "humantime_serde")]
    pub slow_threshold: Duration,
    /// Most answer records put on a span (`tapio.dns.answers`, and the
    /// addresses among them in `dns.answers`).
    pub max_answers: usize,
    /// Encrypted DNS (DoT, DoH): which TLS connections are lookups a
    /// workload makes past the node resolver. Read by this probe
    /// (`tapio.dns.encrypted.connections`, per process) and by the tc
    /// probe (`network.protocol.name` `dot`/`doh`).
    pub encrypted: EncryptedDns,
}

/// What counts as encrypted DNS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptedDns {
    /// DNS-over-TLS server ports: any TLS connection to one is DoT.
    pub dot_ports: Vec<u16>,
    /// Ports DoH resolvers listen on. The dns probe reads the ClientHello
    /// of connections to these ports only (the tc probe reads every one).
    pub doh_ports: Vec<u16>,
    /// DoH resolver names: a TLS connection whose server name (SNI) is
    /// one of these, case-insensitively, is DoH. Empty: no DoH by name.
    pub doh_resolvers: Vec<String>,
}

impl Default for EncryptedDns {
    fn default() -> Self {
        Self {
            dot_ports: vec![853],
            doh_ports: vec![443],
            doh_resolvers: [
                "dns.google",
                "dns64.dns.google",
                "cloudflare-dns.com",
                "mozilla.cloudflare-dns.com",
                "one.one.one.one",
                "dns.quad9.net",
                "doh.opendns.com",
                "dns.adguard-dns.com",
                "dns.nextdns.io",
                "doh.cleanbrowsing.org",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Default for DnsProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(1024 * 1024),
            wakeup_interval: Duration::from_millis(100),
            ports: vec![53],
            timeout: Duration::from_secs(5),
            sample_rate: 1.0,
            slow_threshold: Duration::from_millis(500),
            max_answers: 16,
            encrypted: EncryptedDns::default(),
        }
    }
}

/// The network probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkProbe {
    /// Run this probe (see `probes.process.enabled`).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB).
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// Fraction (0.0–1.0) of successful connects exported as spans, and of
    /// closes exported as logs. Refused, timed-out, unreachable and slow
    /// connects are always exported; the duration histogram counts every
    /// attempt whatever the rate.
    pub sample_rate: f64,
    /// Connects at least this slow are always exported as spans.
    #[serde(with = "humantime_serde")]
    pub slow_threshold: Duration,
}

impl Default for NetworkProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(1024 * 1024),
            wakeup_interval: Duration::from_millis(100),
            sample_rate: 1.0,
            slow_threshold: Duration::from_millis(500),
        }
    }
}

/// The process probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessProbe {
    /// Run this probe. When the kernel cannot support it and it was enabled
    /// explicitly, `tapio run` fails; by default it is skipped with a warning.
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (a power of two, at least 4 KiB; suffixes
    /// KiB/MiB accepted). One exec record is 1.6 KiB.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer before userspace reads it.
    /// The kernel wakes userspace early once an eighth of the ring buffer is
    /// full; `0s` wakes it for every record (lowest latency, most CPU).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// Emit `process.exec` records.
    pub exec: bool,
    /// Emit `process.exit` records.
    pub exit: bool,
    /// Emit `process.fork` records (new processes, not threads).
    pub fork: bool,
}

impl Default for ProcessProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(1024 * 1024),
            wakeup_interval: Duration::from_millis(100),
            exec: true,
            exit: true,
            fork: true,
        }
    }
}

/// The kernel probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelProbe {
    /// Run this probe (see `probes.process.enabled`).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB). An
    /// OOM-kill record is 400 bytes.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// `kernel.oom_kill` records and the `tapio.oom.kills` counter.
    pub oom_kill: bool,
    /// How the OOM killer is hooked: `auto` (the best the kernel accepts),
    /// `tp_btf` (the victim's task: its own cgroup and memory; needs
    /// mark_victim's two-argument prototype, Linux 6.8+ or a backport) or
    /// `tracepoint` (the tracepoint record's fields; the trigger's cgroup).
    /// `tapio probes` shows which the kernel takes.
    pub attach: KernelAttach,
    /// io_uring: `kernel.io_uring.create` logs, and every completion
    /// counted by opcode and result (`tapio.io_uring.operations`).
    pub io_uring: bool,
    /// Fraction (0.0–1.0) of io_uring requests timed from submission to
    /// completion (`tapio.io_uring.duration`). Timing costs a map update
    /// and lookup per request, so it is sampled; the counts are not.
    pub io_uring_sample_rate: f64,
    /// Page and slab allocations (`tapio.memory.allocations`,
    /// `tapio.memory.allocated`): on average one allocation in this many is
    /// sampled in the kernel and counts for N; 0 turns the allocation hooks
    /// off. An interval, not a fraction like `io_uring_sample_rate`: an
    /// unsampled allocation costs a per-CPU decrement, a sampled one a map
    /// update. At most 1000000.
    pub memory_sample_every: u32,
}

impl Default for KernelProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(64 * 1024),
            wakeup_interval: Duration::from_millis(100),
            oom_kill: true,
            attach: KernelAttach::Auto,
            io_uring: true,
            io_uring_sample_rate: 0.05,
            memory_sample_every: 100,
        }
    }
}

/// The systemd probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemdProbe {
    /// Run this probe (see `probes.process.enabled`).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB). A unit
    /// record is 384 bytes; a unit makes three.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// Top-level slices (directories of the cgroup v2 root) whose units
    /// are reported: a `*.service` or `*.scope` cgroup anywhere below one
    /// of them is a unit.
    pub slices: Vec<String>,
}

impl Default for SystemdProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(64 * 1024),
            wakeup_interval: Duration::from_millis(100),
            slices: vec!["system.slice".into(), "user.slice".into()],
        }
    }
}

/// The netns probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetnsProbe {
    /// Off unless `true`: to follow interface, address and route changes
    /// inside other namespaces Tapio gives each namespace it learns of an
    /// id (nsid) in its own, as `ip netns set` would (see "Network
    /// namespaces and CNI" in the README).
    pub enabled: Option<bool>,
    /// Ring-buffer size in bytes (power of two, at least 4 KiB). A
    /// namespace record is 80 bytes, a CNI plugin record 8528.
    pub ring_buffer_size: ByteSize,
    /// Longest a record waits in the ring buffer (see `probes.process`).
    #[serde(with = "humantime_serde")]
    pub wakeup_interval: Duration,
    /// Executables under this directory are CNI plugins (`cni.plugin.exec`).
    /// Absolute, as the runtime executes them (libcni joins its CNI_PATH
    /// entry and the plugin name; a symlinked directory is not resolved).
    /// Empty: no plugin records.
    pub cni_bin_dir: String,
    /// Interface, address and route changes from rtnetlink, in Tapio's
    /// namespace and every namespace it has an id for.
    pub rtnetlink: bool,
}

impl Default for NetnsProbe {
    fn default() -> Self {
        Self {
            enabled: None,
            ring_buffer_size: ByteSize(256 * 1024),
            wakeup_interval: Duration::from_millis(100),
            cni_bin_dir: "/opt/cni/bin".into(),
            rtnetlink: true,
        }
    }
}

/// The kernel probe's OOM hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelAttach {
    /// Best first: tp_btf, then tracepoint.
    Auto,
    /// `tp_btf/mark_victim` only.
    TpBtf,
    /// `tracepoint/oom/mark_victim` only.
    Tracepoint,
}

/// Exporters, keyed like the OpenTelemetry collector's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exporters {
    /// OTLP over gRPC (the collector's `otlp` exporter).
    pub otlp: Option<OtlpExporter>,
    /// OTLP over HTTP with protobuf bodies (the collector's `otlphttp`).
    pub otlphttp: Option<OtlpExporter>,
    /// OTLP-JSON, one export request per line, on stdout.
    pub stdout: Option<StdoutExporter>,
    /// Serve Tapio's metrics on `/metrics` in the Prometheus text format,
    /// named as the collector's `prometheus` exporter names them. A pull
    /// exporter: it runs beside the one push exporter above (or stdout).
    pub prometheus: Option<PrometheusExporter>,
}

/// The `/metrics` endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusExporter {
    /// `IP:port` to listen on. Loopback unless you mean to expose it.
    pub endpoint: String,
}

impl Default for PrometheusExporter {
    fn default() -> Self {
        Self {
            endpoint: "127.0.0.1:9464".into(),
        }
    }
}

/// Settings shared by the OTLP gRPC and HTTP exporters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExporter {
    /// `http(s)://host:port`. gRPC: the server address. HTTP: the base URL,
    /// to which `/v1/logs`, `/v1/traces`, `/v1/metrics` are appended.
    /// Default: `OTEL_EXPORTER_OTLP_ENDPOINT`, else localhost 4317 / 4318.
    pub endpoint: Option<String>,
    /// Extra request headers (gRPC metadata), merged over
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    pub headers: BTreeMap<String, String>,
    /// `gzip` or `none`. Default: `OTEL_EXPORTER_OTLP_COMPRESSION`, else none.
    pub compression: Option<Compression>,
    /// Per-request timeout. Default: `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10s.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// TLS for `https` endpoints.
    pub tls: TlsConfig,
    /// Retry of failed exports with exponential backoff.
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    pub sending_queue: QueueConfig,
}

/// Compression of request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (RFC 1952).
    Gzip,
    /// No compression.
    None,
}

/// TLS client settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust instead of the system roots.
    /// Default: `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    pub ca_file: Option<String>,
    /// PEM client certificate for mutual TLS.
    /// Default: `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`.
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`. Default: `OTEL_EXPORTER_OTLP_CLIENT_KEY`.
    pub key_file: Option<String>,
    /// Server name to verify, when it differs from the endpoint host.
    pub server_name: Option<String>,
}

/// Retry of failed exports, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures (unavailable, throttled, timeouts).
    pub enabled: bool,
    /// First backoff.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest backoff.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a batch (and count it dropped) after this long.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// The bounded queue in front of an exporter. When it is full the oldest
/// records are dropped and counted in `tapio.export.dropped`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Capacity per signal, in records (log records or spans).
    pub queue_size: usize,
    /// Capacity per signal in encoded bytes, whichever bound is reached
    /// first: a record bound alone lets big records (long command lines)
    /// take many times the memory typical ones do.
    pub queue_bytes: ByteSize,
    /// Export requests in flight at once per signal (the collector's key):
    /// one request at a time caps throughput at one batch per round trip.
    /// The gRPC sink opens as many HTTP/2 connections (see `GrpcSink`).
    pub num_consumers: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            queue_size: 16384,
            queue_bytes: ByteSize(8 << 20),
            num_consumers: 4,
        }
    }
}

/// The stdout exporter has no settings yet; `{}` enables it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutExporter {
    /// Capacity per signal of the queue in front of stdout, in records.
    pub queue_size: Option<usize>,
}

/// Batching per signal.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// Log records (`OTEL_BLRP_*`).
    pub logs: BatchConfig,
    /// Spans (`OTEL_BSP_*`).
    pub traces: BatchConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// How long a clean shutdown (SIGINT/SIGTERM) may take to flush.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    /// Threads running the agent's async tasks (ring-buffer readers,
    /// export). Default 1: one core carries ~500k events/s at Tapio's
    /// cost per event, and a second worker cost ~7 % more CPU per event
    /// in the sustained-load bench (cross-thread wakeups). Read at start.
    pub worker_threads: Option<usize>,
}

/// One signal's batching.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Longest a record waits before its batch is sent. Default:
    /// `OTEL_BLRP_SCHEDULE_DELAY` / `OTEL_BSP_SCHEDULE_DELAY`, else 1s.
    #[serde(with = "humantime_serde")]
    pub schedule_delay: Option<Duration>,
    /// Most records in one export request (fewer when a request would take
    /// more than its share of `sending_queue.queue_bytes`). Default 2048.
    pub max_export_batch_size: Option<usize>,
}

/// Metric export.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Interval between metric exports. Default:
    /// `OTEL_METRIC_EXPORT_INTERVAL`, else 60s.
    #[serde(with = "humantime_serde")]
    pub export_interval: Option<Duration>,
}

/// Resource attributes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resource {
    /// Added to every signal's resource; win over `OTEL_RESOURCE_ATTRIBUTES`
    /// and `OTEL_SERVICE_NAME` (`service.name`).
    pub attributes: BTreeMap<String, AttrValue>,
}

/// A scalar attribute value as YAML writes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// Anything else, as text.
    String(String),
}
