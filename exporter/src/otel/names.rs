//! Every signal name Tapio emits, in one table. Docs and tests read these
//! constants; nothing else spells a signal or attribute name.
//!
//! Semantic-convention names wherever one exists; Tapio's own under `tapio.`.

/// Instrumentation scope of everything Tapio emits.
pub const SCOPE_NAME: &str = "tapio";

/// Log event names (`LogRecord.event_name`).
pub mod event {
    pub const PROCESS_EXEC: &str = "process.exec";
    pub const PROCESS_EXIT: &str = "process.exit";
    pub const PROCESS_FORK: &str = "process.fork";
    pub const NETWORK_CONNECTION_CLOSE: &str = "network.connection.close";
    pub const TAPIO_CONFIG_RELOAD: &str = "tapio.config.reload";
    pub const TAPIO_TASK_FAILED: &str = "tapio.task.failed";
    pub const SECURITY_DDOS_MITIGATION: &str = "security.ddos_mitigation";
    pub const SECURITY_POLICY_DECISION: &str = "security.policy_decision";
    pub const NETWORK_FLOW_CLASSIFIED: &str = "network.flow.classified";
    pub const NETWORK_CIRCUIT_BREAKER_STATE_CHANGE: &str = "network.circuit_breaker.state_change";
    pub const SECURITY_CREDENTIALS_CHANGE: &str = "security.credentials.change";
    pub const SECURITY_CAPABILITY_USE: &str = "security.capability.use";
    pub const SECURITY_PTRACE: &str = "security.ptrace";
    pub const SECURITY_PROCESS_VM_WRITEV: &str = "security.process_vm_writev";
    pub const SECURITY_MEMFD_EXEC: &str = "security.memfd.exec";
    pub const SECURITY_MEMORY_WX: &str = "security.memory.wx";
    pub const SECURITY_MODULE_LOAD: &str = "security.module.load";
    pub const SECURITY_MODULE_REQUEST: &str = "security.module.request";
    pub const SECURITY_BPF_LOAD: &str = "security.bpf.load";
    pub const SECURITY_FILE_CHANGE: &str = "security.file.change";
    pub const KERNEL_OOM_KILL: &str = "kernel.oom_kill";
    pub const KERNEL_IO_URING_CREATE: &str = "kernel.io_uring.create";
    pub const SYSTEMD_UNIT_START: &str = "systemd.unit.start";
    pub const SYSTEMD_UNIT_STOP: &str = "systemd.unit.stop";
    pub const NETWORK_NAMESPACE_CREATE: &str = "network.namespace.create";
    pub const NETWORK_NAMESPACE_DELETE: &str = "network.namespace.delete";
    pub const NETWORK_INTERFACE_CREATE: &str = "network.interface.create";
    pub const NETWORK_INTERFACE_DELETE: &str = "network.interface.delete";
    pub const NETWORK_INTERFACE_MOVE: &str = "network.interface.move";
    pub const NETWORK_INTERFACE_UP: &str = "network.interface.up";
    pub const NETWORK_INTERFACE_DOWN: &str = "network.interface.down";
    pub const NETWORK_ADDRESS_ADD: &str = "network.address.add";
    pub const NETWORK_ADDRESS_DELETE: &str = "network.address.delete";
    pub const NETWORK_ROUTE_ADD: &str = "network.route.add";
    pub const NETWORK_ROUTE_DELETE: &str = "network.route.delete";
    pub const CNI_PLUGIN_EXEC: &str = "cni.plugin.exec";
}

/// Span names.
pub mod span {
    pub const TCP_CONNECT: &str = "tcp.connect";
    pub const DNS_QUERY: &str = "dns.query";
    pub const ETCD_WAL_FSYNC: &str = "etcd.wal_fsync";
}

/// Attribute keys.
pub mod attr {
    // semconv process.*
    pub const PROCESS_PID: &str = "process.pid";
    pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
    pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
    pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
    pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
    pub const PROCESS_OWNER: &str = "process.owner";
    pub const PROCESS_USER_ID: &str = "process.user.id";
    pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
    pub const PROCESS_CREATION_TIME: &str = "process.creation.time";
    pub const PROCESS_EXIT_TIME: &str = "process.exit.time";
    pub const THREAD_ID: &str = "thread.id";
    // semconv network / server / client / error
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    pub const NETWORK_TYPE: &str = "network.type";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const CLIENT_ADDRESS: &str = "client.address";
    pub const CLIENT_PORT: &str = "client.port";
    pub const ERROR_TYPE: &str = "error.type";
    // semconv dns
    pub const DNS_QUESTION_NAME: &str = "dns.question.name";
    /// The resolved IPv4/IPv6 addresses (semconv: addresses only).
    pub const DNS_ANSWERS: &str = "dns.answers";
    // Tapio's dns (the registry has no name for these)
    /// The question's record type (A, AAAA, ...).
    pub const DNS_QUESTION_TYPE: &str = "tapio.dns.question.type";
    /// The response code name (NOERROR, NXDOMAIN, ...).
    pub const DNS_RESPONSE_CODE: &str = "tapio.dns.response.code";
    /// DNS transaction id.
    pub const TAPIO_DNS_ID: &str = "tapio.dns.id";
    /// Every answer record as `name TYPE data` (`dns.answers` holds only
    /// the addresses).
    pub const TAPIO_DNS_ANSWERS: &str = "tapio.dns.answers";
    /// The answer section was longer than captured or configured.
    pub const TAPIO_DNS_ANSWERS_CUT: &str = "tapio.dns.answers_cut";
    // semconv container / k8s
    pub const CONTAINER_ID: &str = "container.id";
    pub const K8S_POD_UID: &str = "k8s.pod.uid";
    /// The systemd unit owning a task outside containers (no semconv name).
    pub const TAPIO_SYSTEMD_UNIT: &str = "tapio.systemd.unit";
    // Tapio's own
    /// Lifetime of an exited process, seconds.
    pub const TAPIO_PROCESS_DURATION: &str = "tapio.process.duration";
    /// Signal that ended a process (name, e.g. SIGKILL).
    pub const TAPIO_PROCESS_EXIT_SIGNAL: &str = "tapio.process.exit.signal";
    pub const TAPIO_PROCESS_CORE_DUMPED: &str = "tapio.process.core_dumped";
    /// The child of a fork.
    pub const TAPIO_PROCESS_CHILD_PID: &str = "tapio.process.child_pid";
    /// Set when the command line or path was longer than the kernel captured.
    pub const TAPIO_TRUNCATED: &str = "tapio.truncated";
    pub const TAPIO_CGROUP_ID: &str = "tapio.cgroup.id";
    /// `inbound` (accepted) or `outbound` (connect()).
    pub const TAPIO_CONNECTION_DIRECTION: &str = "tapio.connection.direction";
    /// Lifetime of a closed connection, seconds.
    pub const TAPIO_CONNECTION_DURATION: &str = "tapio.connection.duration";
    pub const TAPIO_TCP_BYTES_SENT: &str = "tapio.tcp.bytes_sent";
    pub const TAPIO_TCP_BYTES_RECEIVED: &str = "tapio.tcp.bytes_received";
    /// Smoothed RTT at close, seconds.
    pub const TAPIO_TCP_SRTT: &str = "tapio.tcp.srtt";
    /// errno name of a failed connect (ECONNREFUSED…).
    pub const TAPIO_ERRNO: &str = "tapio.errno";
    pub const TAPIO_PROBE: &str = "tapio.probe";
    pub const TAPIO_REASON: &str = "tapio.reason";
    pub const TAPIO_SIGNAL: &str = "tapio.signal";
    pub const TAPIO_ATTACH_TYPE: &str = "tapio.attach_type";
    /// `pass` or `drop`: what the XDP filter returned.
    pub const TAPIO_XDP_ACTION: &str = "tapio.xdp.action";
    /// Why the XDP filter passed or dropped (blocklist, rate_limit, ...).
    pub const TAPIO_XDP_REASON: &str = "tapio.xdp.reason";
    pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
    pub const SOURCE_ADDRESS: &str = "source.address";
    /// `started` or `ended`.
    pub const TAPIO_MITIGATION_STATE: &str = "tapio.mitigation.state";
    /// When an auto-block ends (RFC 3339).
    pub const TAPIO_MITIGATION_UNTIL: &str = "tapio.mitigation.until";
    /// Packets dropped under an auto-block that ended.
    pub const TAPIO_MITIGATION_DROPPED: &str = "tapio.mitigation.dropped";
    // tc probe
    /// semconv: `http`, `http2`, `grpc`, `tls`, `dns`, `mysql`,
    /// `postgresql`, `redis`, `kafka`, `unknown`.
    pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
    /// semconv: `receive` (ingress) or `transmit` (egress).
    pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
    /// The TLS server name (SNI) of a ClientHello.
    pub const TLS_CLIENT_SERVER_NAME: &str = "tls.client.server_name";
    /// A virtual service's name (`probes.tc.policy.services[].name`).
    pub const TAPIO_TC_SERVICE: &str = "tapio.tc.service";
    /// A backend, `IP:port`.
    pub const TAPIO_TC_BACKEND: &str = "tapio.tc.backend";
    /// A chaos experiment's name.
    pub const TAPIO_TC_EXPERIMENT: &str = "tapio.tc.experiment";
    /// Circuit-breaker state: `closed`, `open`, `half_open`.
    pub const TAPIO_TC_BREAKER_STATE: &str = "tapio.tc.circuit_breaker.state";
    /// The state before a change.
    pub const TAPIO_TC_BREAKER_PREVIOUS: &str = "tapio.tc.circuit_breaker.previous_state";
    /// Connection failures in a row behind a breaker change.
    pub const TAPIO_TC_FAILURES_IN_A_ROW: &str = "tapio.tc.circuit_breaker.failures";
    /// The enforcement rule's name.
    pub const TAPIO_LSM_RULE: &str = "tapio.lsm.rule";
    /// `deny` or `audit`.
    pub const TAPIO_LSM_ACTION: &str = "tapio.lsm.action";
    /// Where it was enforced: connect, bind, socket_create, device,
    /// file_open, exec, ptrace, module_load, bpf.
    pub const TAPIO_LSM_HOOK: &str = "tapio.lsm.hook";
    /// `enforced` or `refused` (the kernel cannot run its hook).
    pub const TAPIO_LSM_STATE: &str = "tapio.lsm.state";
    /// Device rules: `major:minor` and the access asked for.
    pub const TAPIO_LSM_DEVICE: &str = "tapio.lsm.device";
    pub const TAPIO_LSM_ACCESS: &str = "tapio.lsm.access";
    pub const TAPIO_LSM_TARGET_PID: &str = "tapio.lsm.target.pid";
    /// How a config reload ended: `applied`, `rejected`, `failed`.
    pub const TAPIO_RELOAD_RESULT: &str = "tapio.reload.result";
    /// The config file a reload read.
    pub const TAPIO_CONFIG_PATH: &str = "tapio.config.path";
    /// Where a policy came from: `file` or `opamp`.
    pub const TAPIO_CONFIG_SOURCE: &str = "tapio.config.source";
    /// Which of Tapio's tasks failed (`tapio.task.failed`).
    pub const TAPIO_TASK: &str = "tapio.task";
    /// How an OpAMP exchange ended: `ok` or `failed`.
    pub const TAPIO_OPAMP_RESULT: &str = "tapio.opamp.result";
    // semconv file
    pub const FILE_PATH: &str = "file.path";
    pub const FILE_NAME: &str = "file.name";
    pub const FILE_INODE: &str = "file.inode";
    // security probe (Tapio's own: semconv has no names for these)
    /// Syscall that produced a security record (setuid, ptrace, mmap…).
    pub const TAPIO_SECURITY_SYSCALL: &str = "tapio.security.syscall";
    /// Where a credential change was seen: `commit_creds` (every path) or
    /// `syscall` (a set*id/exec syscall's enter/exit pair).
    pub const TAPIO_SECURITY_CREDENTIALS_HOOK: &str = "tapio.security.credentials.hook";
    /// Credentials before and after a change.
    pub const TAPIO_SECURITY_OLD_UID: &str = "tapio.security.old.uid";
    pub const TAPIO_SECURITY_NEW_UID: &str = "tapio.security.new.uid";
    pub const TAPIO_SECURITY_OLD_EUID: &str = "tapio.security.old.euid";
    pub const TAPIO_SECURITY_NEW_EUID: &str = "tapio.security.new.euid";
    pub const TAPIO_SECURITY_OLD_SUID: &str = "tapio.security.old.suid";
    pub const TAPIO_SECURITY_NEW_SUID: &str = "tapio.security.new.suid";
    pub const TAPIO_SECURITY_OLD_FSUID: &str = "tapio.security.old.fsuid";
    pub const TAPIO_SECURITY_NEW_FSUID: &str = "tapio.security.new.fsuid";
    pub const TAPIO_SECURITY_OLD_GID: &str = "tapio.security.old.gid";
    pub const TAPIO_SECURITY_NEW_GID: &str = "tapio.security.new.gid";
    pub const TAPIO_SECURITY_OLD_EGID: &str = "tapio.security.old.egid";
    pub const TAPIO_SECURITY_NEW_EGID: &str = "tapio.security.new.egid";
    /// Capabilities in the effective set after a change and not before
    /// (comma-separated names).
    pub const TAPIO_SECURITY_CAPABILITIES_GAINED: &str = "tapio.security.capabilities.gained";
    /// Capabilities dropped from the effective set.
    pub const TAPIO_SECURITY_CAPABILITIES_LOST: &str = "tapio.security.capabilities.lost";
    /// A capability name (CAP_SYS_ADMIN…) and whether the check passed.
    pub const TAPIO_SECURITY_CAPABILITY: &str = "tapio.security.capability";
    pub const TAPIO_SECURITY_CAPABILITY_GRANTED: &str = "tapio.security.capability.granted";
    /// ptrace request (PTRACE_ATTACH…).
    pub const TAPIO_SECURITY_PTRACE_REQUEST: &str = "tapio.security.ptrace.request";
    /// The process acted upon (ptrace, process_vm_writev).
    pub const TAPIO_SECURITY_TARGET_PID: &str = "tapio.security.target.pid";
    pub const TAPIO_SECURITY_TARGET_EXECUTABLE_PATH: &str = "tapio.security.target.executable.path";
    pub const TAPIO_SECURITY_TARGET_EXECUTABLE_NAME: &str = "tapio.security.target.executable.name";
    /// W+X memory: address, length, protection (e.g. rwx).
    pub const TAPIO_SECURITY_MEMORY_ADDRESS: &str = "tapio.security.memory.address";
    pub const TAPIO_SECURITY_MEMORY_LENGTH: &str = "tapio.security.memory.length";
    pub const TAPIO_SECURITY_MEMORY_PROTECTION: &str = "tapio.security.memory.protection";
    pub const TAPIO_SECURITY_MODULE_NAME: &str = "tapio.security.module.name";
    /// request_module: whether the caller waits for modprobe.
    pub const TAPIO_SECURITY_MODULE_WAIT: &str = "tapio.security.module.wait";
    pub const TAPIO_SECURITY_BPF_PROG_TYPE: &str = "tapio.security.bpf.prog.type";
    pub const TAPIO_SECURITY_BPF_PROG_NAME: &str = "tapio.security.bpf.prog.name";
    pub const TAPIO_SECURITY_BPF_INSN_COUNT: &str = "tapio.security.bpf.insn_count";
    /// write, truncate, rename, unlink, chmod, chown.
    pub const TAPIO_SECURITY_FILE_OPERATION: &str = "tapio.security.file.operation";
    /// The configured watch entry that matched.
    pub const TAPIO_SECURITY_WATCH_PATH: &str = "tapio.security.watch.path";
    /// Writes by the same process to the same file folded into this record.
    pub const TAPIO_SECURITY_WRITES_SUPPRESSED: &str = "tapio.security.file.writes_suppressed";
    /// rename: the destination path matched (a watched file was replaced).
    pub const TAPIO_SECURITY_RENAME_TARGET: &str = "tapio.security.rename.target";
    /// chmod: the new mode (octal text); chown: new owner ids.
    pub const TAPIO_SECURITY_FILE_MODE: &str = "tapio.security.file.mode";
    pub const TAPIO_SECURITY_FILE_UID: &str = "tapio.security.file.uid";
    pub const TAPIO_SECURITY_FILE_GID: &str = "tapio.security.file.gid";
    // kernel probe: OOM kills (memory figures in bytes, the kernel's own
    // approximate counters, as its "Killed process" line prints them)
    pub const TAPIO_OOM_TOTAL_VM_BYTES: &str = "tapio.oom.total_vm_bytes";
    pub const TAPIO_OOM_ANON_RSS_BYTES: &str = "tapio.oom.anon_rss_bytes";
    pub const TAPIO_OOM_FILE_RSS_BYTES: &str = "tapio.oom.file_rss_bytes";
    pub const TAPIO_OOM_SHMEM_RSS_BYTES: &str = "tapio.oom.shmem_rss_bytes";
    pub const TAPIO_OOM_SWAP_BYTES: &str = "tapio.oom.swap_bytes";
    pub const TAPIO_OOM_PGTABLES_BYTES: &str = "tapio.oom.pgtables_bytes";
    /// The victim's oom_score_adj (-1000..1000).
    pub const TAPIO_OOM_SCORE_ADJ: &str = "tapio.oom.score_adj";
    /// The process whose allocation ran out of memory (may be the victim).
    pub const TAPIO_OOM_TRIGGER_PID: &str = "tapio.oom.trigger.pid";
    pub const TAPIO_OOM_TRIGGER_EXECUTABLE_NAME: &str = "tapio.oom.trigger.executable.name";
    /// Whose cgroup `container.id`/`k8s.pod.uid` come from: `victim`, or
    /// `trigger` where the hook cannot see the victim's task.
    pub const TAPIO_OOM_CGROUP_SOURCE: &str = "tapio.oom.cgroup_source";
    // kernel probe: io_uring
    /// The operation (`read`, `write`, `nop`, `accept`...: the UAPI's
    /// IORING_OP_* name, lowercase).
    pub const TAPIO_IO_URING_OPCODE: &str = "tapio.io_uring.opcode";
    /// `ok` (the completion's result >= 0) or `error` (-errno).
    pub const TAPIO_IO_URING_RESULT: &str = "tapio.io_uring.result";
    /// The new ring's file descriptor and queue sizes.
    pub const TAPIO_IO_URING_FD: &str = "tapio.io_uring.fd";
    pub const TAPIO_IO_URING_SQ_ENTRIES: &str = "tapio.io_uring.sq_entries";
    pub const TAPIO_IO_URING_CQ_ENTRIES: &str = "tapio.io_uring.cq_entries";
    /// IORING_SETUP_* flags set (array of names: `sqpoll`, `iopoll`...).
    pub const TAPIO_IO_URING_SETUP_FLAGS: &str = "tapio.io_uring.setup_flags";
    // systemd probe (unit lifecycle from its cgroups)
    /// The slice a unit's cgroup is under (`system.slice`, `user-1000.slice`).
    pub const TAPIO_SYSTEMD_SLICE: &str = "tapio.systemd.slice";
    /// The unit's cgroup path from the cgroup v2 root.
    pub const TAPIO_CGROUP_PATH: &str = "tapio.cgroup.path";
    /// The first process that entered the unit (pid).
    pub const TAPIO_SYSTEMD_UNIT_FIRST_PID: &str = "tapio.systemd.unit.first_pid";
    /// Seconds from the unit's cgroup creation to its removal.
    pub const TAPIO_SYSTEMD_UNIT_LIFETIME: &str = "tapio.systemd.unit.lifetime";
    /// Processes that exited in the unit while Tapio watched.
    pub const TAPIO_SYSTEMD_UNIT_EXITS: &str = "tapio.systemd.unit.exits";
    /// ... of them with a non-zero code, an unclean signal or an OOM kill.
    pub const TAPIO_SYSTEMD_UNIT_FAILED_EXITS: &str = "tapio.systemd.unit.failed_exits";
    /// ... of them killed by the OOM killer.
    pub const TAPIO_SYSTEMD_UNIT_OOM_KILLS: &str = "tapio.systemd.unit.oom_kills";
    /// systemd's words for how a unit ended: `success`, `exit-code`,
    /// `signal`, `oom-kill`.
    pub const TAPIO_SYSTEMD_UNIT_RESULT: &str = "tapio.systemd.unit.result";
    /// How the first process came in: `attach` (cgroup.procs) or `fork`
    /// (clone3 into the cgroup).
    pub const TAPIO_SYSTEMD_UNIT_ENTRY: &str = "tapio.systemd.unit.entry";
    /// The unit existed before Tapio started (creation time, first pid and
    /// earlier exits unknown).
    pub const TAPIO_SYSTEMD_UNIT_PREEXISTING: &str = "tapio.systemd.unit.preexisting";
    // resource
    pub const SERVICE_NAME: &str = "service.name";
    pub const SERVICE_VERSION: &str = "service.version";
    /// OpAMP instance UID (in the AgentDescription).
    pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    pub const HOST_NAME: &str = "host.name";
    pub const HOST_ID: &str = "host.id";
    pub const OS_TYPE: &str = "os.type";
    pub const OS_VERSION: &str = "os.version";
    /// Which allocator a sampled allocation came from: page, kmalloc,
    /// kmem_cache.
    pub const TAPIO_MEMORY_ALLOCATOR: &str = "tapio.memory.allocator";
    /// N of the 1:N allocation sampling behind an estimate.
    pub const TAPIO_MEMORY_SAMPLE_EVERY: &str = "tapio.memory.sample_every";
    /// The syscall an etcd WAL sync made: fdatasync or fsync.
    pub const TAPIO_ETCD_SYSCALL: &str = "tapio.etcd.syscall";
    /// The WAL file's descriptor in the etcd process.
    pub const TAPIO_ETCD_FD: &str = "tapio.etcd.fd";
    // netns probe (network namespaces, rtnetlink, CNI plugins)
    /// A network namespace's inode number (`ls -iL /run/netns/x`,
    /// `readlink /proc/<pid>/ns/net`): its one stable identity.
    pub const TAPIO_NETNS_INODE: &str = "tapio.network.namespace.inode";
    /// Its id (nsid) as Tapio's own namespace numbers it (`ip netns list-id`).
    pub const TAPIO_NETNS_ID: &str = "tapio.network.namespace.id";
    /// A bind mount that keeps it (`/run/netns/<name>`), when there is one.
    pub const TAPIO_NETNS_PATH: &str = "tapio.network.namespace.path";
    /// The namespace the creating task was in before.
    pub const TAPIO_NETNS_PARENT_INODE: &str = "tapio.network.namespace.parent_inode";
    /// How it was made: `unshare`, `clone`; `existing` for one found at start.
    pub const TAPIO_NETNS_VIA: &str = "tapio.network.namespace.via";
    /// Where an interface moved to (`network.interface.move`), or the
    /// namespace a CNI call is for (CNI_NETNS, `cni.plugin.exec`).
    pub const TAPIO_NETNS_TARGET_INODE: &str = "tapio.network.namespace.target.inode";
    pub const TAPIO_NETNS_TARGET_ID: &str = "tapio.network.namespace.target.id";
    /// The interface's index in its namespace.
    pub const TAPIO_NETWORK_INTERFACE_INDEX: &str = "tapio.network.interface.index";
    /// Its link kind (`veth`, `bridge`, `vxlan`...; IFLA_INFO_KIND).
    pub const TAPIO_NETWORK_INTERFACE_KIND: &str = "tapio.network.interface.kind";
    /// An interface address and its prefix length.
    pub const TAPIO_NETWORK_ADDRESS: &str = "tapio.network.address";
    pub const TAPIO_NETWORK_PREFIX_LENGTH: &str = "tapio.network.prefix_length";
    /// A route's destination (`198.18.1.0/24`, `default`), gateway,
    /// table (254 is main) and the interface it leaves through.
    pub const TAPIO_NETWORK_ROUTE_DESTINATION: &str = "tapio.network.route.destination";
    pub const TAPIO_NETWORK_ROUTE_GATEWAY: &str = "tapio.network.route.gateway";
    pub const TAPIO_NETWORK_ROUTE_TABLE: &str = "tapio.network.route.table";
    /// The CNI plugin (the executable's file name).
    pub const TAPIO_CNI_PLUGIN: &str = "tapio.cni.plugin";
    /// CNI_COMMAND: ADD, DEL, CHECK, VERSION, GC, STATUS.
    pub const TAPIO_CNI_COMMAND: &str = "tapio.cni.command";
    /// CNI_CONTAINERID: the sandbox (pod) container the call is for.
    pub const TAPIO_CNI_CONTAINER_ID: &str = "tapio.cni.container_id";
    /// CNI_NETNS: the namespace path the plugin was handed.
    pub const TAPIO_CNI_NETNS: &str = "tapio.cni.netns";
    /// CNI_IFNAME: the interface it is to make in that namespace.
    pub const TAPIO_CNI_IFNAME: &str = "tapio.cni.ifname";
}

/// Kind of instrument a metric is exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// Monotonic cumulative sum.
    Counter,
    /// Non-monotonic value sampled at export.
    Gauge,
    /// Explicit-bucket histogram, cumulative.
    Histogram,
}

/// One metric's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub instrument: Instrument,
    pub description: &'static str,
    /// Attribute keys the metric is broken down by (all low-cardinality).
    pub attributes: &'static [&'static str],
}

pub const EVENTS_RECEIVED: MetricDef = MetricDef {
    name: "tapio.events.received",
    unit: "{event}",
    instrument: Instrument::Counter,
    description: "Records read from a probe's ring buffer.",
    attributes: &[attr::TAPIO_PROBE],
};

pub const EVENTS_LOST: MetricDef = MetricDef {
    name: "tapio.events.lost",
    unit: "{event}",
    instrument: Instrument::Counter,
    description: "Events that never became a signal, by probe and reason (ringbuf_full, map_full, read_error, end_unseen counted in the kernel; recursion: program runs the kernel skipped because the program was already running on that CPU, each possibly an event; decode_error and probe-specific ones in userspace).",
    attributes: &[attr::TAPIO_PROBE, attr::TAPIO_REASON],
};

pub const EXPORT_SENT: MetricDef = MetricDef {
    name: "tapio.export.sent",
    unit: "{record}",
    instrument: Instrument::Counter,
    description: "Records (log records, spans, data points) the exporter's destination accepted.",
    attributes: &[attr::TAPIO_SIGNAL],
};

pub const EXPORT_DROPPED: MetricDef = MetricDef {
    name: "tapio.export.dropped",
    unit: "{record}",
    instrument: Instrument::Counter,
    description: "Records dropped on the way out, by the probe that produced them (none: Tapio's own logs and metrics): queue_full (oldest dropped), retry_exhausted, rejected (permanent error; a partial rejection is split over the batch's probes in proportion), shutdown (not flushed in time).",
    attributes: &[attr::TAPIO_SIGNAL, attr::TAPIO_PROBE, attr::TAPIO_REASON],
};

pub const EXPORT_FAILURES: MetricDef = MetricDef {
    name: "tapio.export.failures",
    unit: "{request}",
    instrument: Instrument::Counter,
    description: "Export requests that failed (each retry counts).",
    attributes: &[attr::TAPIO_SIGNAL],
};

pub const EXPORT_QUEUE_LENGTH: MetricDef = MetricDef {
    name: "tapio.export.queue.length",
    unit: "{record}",
    instrument: Instrument::Gauge,
    description: "Records waiting in the export queue.",
    attributes: &[attr::TAPIO_SIGNAL],
};

pub const PIPELINE_LATENCY: MetricDef = MetricDef {
    name: "tapio.pipeline.latency",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "Time from the kernel seeing an event to its record being handed to the exporter.",
    attributes: &[attr::TAPIO_PROBE],
};

pub const PROBE_ATTACHED: MetricDef = MetricDef {
    name: "tapio.probe.attached",
    unit: "1",
    instrument: Instrument::Gauge,
    description: "1 for each running probe, with the attach type the kernel allowed.",
    attributes: &[attr::TAPIO_PROBE, attr::TAPIO_ATTACH_TYPE],
};

pub const TCP_CONNECT_DURATION: MetricDef = MetricDef {
    name: "tapio.tcp.connect.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "Outbound TCP connect time, SYN sent to established or failure; every attempt, aggregated in the kernel.",
    attributes: &[attr::NETWORK_TYPE, attr::ERROR_TYPE],
};

pub const DNS_LOOKUP_DURATION: MetricDef = MetricDef {
    name: "dns.lookup.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "DNS query to response (or timeout) as the client's kernel saw it; every lookup.",
    attributes: &[
        attr::DNS_RESPONSE_CODE,
        attr::NETWORK_TRANSPORT,
        attr::ERROR_TYPE,
    ],
};

pub const DNS_ENCRYPTED_CONNECTIONS: MetricDef = MetricDef {
    name: "tapio.dns.encrypted.connections",
    unit: "{connection}",
    instrument: Instrument::Counter,
    description: "TLS connections local processes opened to encrypted DNS resolvers (DoT: a DoT port; DoH: a ClientHello naming a configured resolver), by the process that connected; the lookups inside are encrypted and not seen.",
    attributes: &[
        attr::NETWORK_PROTOCOL_NAME,
        attr::PROCESS_EXECUTABLE_NAME,
        attr::CONTAINER_ID,
        attr::K8S_POD_UID,
        attr::TAPIO_SYSTEMD_UNIT,
    ],
};

pub const CONFIG_RELOADS: MetricDef = MetricDef {
    name: "tapio.config.reloads",
    unit: "{reload}",
    instrument: Instrument::Counter,
    description: "Policy changes seen while running, from the config file or OpAMP, by result; `rejected` and `failed` left the previous policy in force.",
    attributes: &[attr::TAPIO_CONFIG_SOURCE, attr::TAPIO_RELOAD_RESULT],
};

pub const OPAMP_EXCHANGES: MetricDef = MetricDef {
    name: "tapio.opamp.exchanges",
    unit: "{request}",
    instrument: Instrument::Counter,
    description: "Requests to the OpAMP server: `ok` (answered) or `failed` (unreachable, HTTP error, undecodable answer or an error response; retried with backoff).",
    attributes: &[attr::TAPIO_OPAMP_RESULT],
};

pub const XDP_PACKETS: MetricDef = MetricDef {
    name: "tapio.xdp.packets",
    unit: "{packet}",
    instrument: Instrument::Counter,
    description: "Packets the XDP filter saw, by action, reason and interface; counted per CPU in the kernel.",
    attributes: &[
        attr::TAPIO_XDP_ACTION,
        attr::TAPIO_XDP_REASON,
        attr::NETWORK_INTERFACE_NAME,
    ],
};

pub const XDP_BYTES: MetricDef = MetricDef {
    name: "tapio.xdp.bytes",
    unit: "By",
    instrument: Instrument::Counter,
    description: "Bytes (whole frames) the XDP filter saw, by action, reason and interface.",
    attributes: &[
        attr::TAPIO_XDP_ACTION,
        attr::TAPIO_XDP_REASON,
        attr::NETWORK_INTERFACE_NAME,
    ],
};

pub const LSM_DECISIONS: MetricDef = MetricDef {
    name: "tapio.lsm.decisions",
    unit: "{decision}",
    instrument: Instrument::Counter,
    description:
        "Enforcement decisions by rule and action (deny or audit), counted per CPU in the kernel.",
    attributes: &[attr::TAPIO_LSM_RULE, attr::TAPIO_LSM_ACTION],
};

pub const LSM_RULES: MetricDef = MetricDef {
    name: "tapio.lsm.rules",
    unit: "{rule}",
    instrument: Instrument::Gauge,
    description:
        "1 per configured enforcement rule, with whether this kernel enforces it or refused it.",
    attributes: &[
        attr::TAPIO_LSM_RULE,
        attr::TAPIO_LSM_HOOK,
        attr::TAPIO_LSM_STATE,
    ],
};

pub const TC_PACKETS: MetricDef = MetricDef {
    name: "tapio.tc.packets",
    unit: "{packet}",
    instrument: Instrument::Counter,
    description: "Packets seen by the tc classifier, by the flow's L7 protocol, direction and server port; per-CPU counters in the kernel.",
    attributes: &[
        attr::NETWORK_PROTOCOL_NAME,
        attr::NETWORK_IO_DIRECTION,
        attr::SERVER_PORT,
        attr::NETWORK_INTERFACE_NAME,
    ],
};

pub const TC_BYTES: MetricDef = MetricDef {
    name: "tapio.tc.bytes",
    unit: "By",
    instrument: Instrument::Counter,
    description: "L4 payload bytes (TCP/UDP data, headers excluded) seen by the tc classifier, broken down like tapio.tc.packets.",
    attributes: &[
        attr::NETWORK_PROTOCOL_NAME,
        attr::NETWORK_IO_DIRECTION,
        attr::SERVER_PORT,
        attr::NETWORK_INTERFACE_NAME,
    ],
};

pub const TC_LB_CONNECTIONS: MetricDef = MetricDef {
    name: "tapio.tc.lb.connections",
    unit: "{connection}",
    instrument: Instrument::Counter,
    description: "New flows the load balancer steered to a backend.",
    attributes: &[attr::TAPIO_TC_SERVICE, attr::TAPIO_TC_BACKEND],
};

pub const TC_LB_FAILURES: MetricDef = MetricDef {
    name: "tapio.tc.lb.failures",
    unit: "{connection}",
    instrument: Instrument::Counter,
    description: "Steered connections that failed: a RST answered the SYN, or the client retransmitted its SYN unanswered.",
    attributes: &[attr::TAPIO_TC_SERVICE, attr::TAPIO_TC_BACKEND],
};

pub const TC_CIRCUIT_BREAKER_STATE: MetricDef = MetricDef {
    name: "tapio.tc.circuit_breaker.state",
    unit: "1",
    instrument: Instrument::Gauge,
    description: "Per backend: 0 closed, 1 open (ejected), 2 half-open.",
    attributes: &[attr::TAPIO_TC_SERVICE, attr::TAPIO_TC_BACKEND],
};

pub const TC_CHAOS_DROPPED: MetricDef = MetricDef {
    name: "tapio.tc.chaos.dropped",
    unit: "{packet}",
    instrument: Instrument::Counter,
    description: "Packets a loss-injection experiment dropped.",
    attributes: &[attr::TAPIO_TC_EXPERIMENT],
};

pub const IO_URING_OPERATIONS: MetricDef = MetricDef {
    name: "tapio.io_uring.operations",
    unit: "{operation}",
    instrument: Instrument::Counter,
    description: "io_uring completions (CQEs with a request), every one, counted per CPU in the kernel by opcode and result.",
    attributes: &[attr::TAPIO_IO_URING_OPCODE, attr::TAPIO_IO_URING_RESULT],
};

pub const IO_URING_DURATION: MetricDef = MetricDef {
    name: "tapio.io_uring.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "io_uring request time, submission to first completion, of a sampled share of requests (probes.kernel.io_uring_sample_rate), aggregated in the kernel.",
    attributes: &[attr::TAPIO_IO_URING_OPCODE],
};

pub const MEMORY_ALLOCATIONS: MetricDef = MetricDef {
    name: "tapio.memory.allocations",
    unit: "{allocation}",
    instrument: Instrument::Counter,
    description: "Page and slab allocations per workload, estimated from a 1:N sample taken in the kernel (probes.kernel.memory_sample_every; each sample counts N), summed per cgroup in the kernel.",
    attributes: &[
        attr::TAPIO_MEMORY_ALLOCATOR,
        attr::TAPIO_MEMORY_SAMPLE_EVERY,
        attr::CONTAINER_ID,
        attr::K8S_POD_UID,
        attr::TAPIO_SYSTEMD_UNIT,
    ],
};

pub const MEMORY_ALLOCATED: MetricDef = MetricDef {
    name: "tapio.memory.allocated",
    unit: "By",
    instrument: Instrument::Counter,
    description: "Bytes of page and slab allocations per workload, estimated from the same 1:N sample (each sample counts N times its size).",
    attributes: &[
        attr::TAPIO_MEMORY_ALLOCATOR,
        attr::TAPIO_MEMORY_SAMPLE_EVERY,
        attr::CONTAINER_ID,
        attr::K8S_POD_UID,
        attr::TAPIO_SYSTEMD_UNIT,
    ],
};

pub const ETCD_WAL_FSYNC_DURATION: MetricDef = MetricDef {
    name: "tapio.etcd.wal_fsync.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "Time of every fdatasync/fsync of an etcd write-ahead-log file (*.wal) by a watched etcd process, log2 buckets in the kernel; etcd's etcd_disk_wal_fsync_duration_seconds seen from the kernel.",
    attributes: &[],
};

pub const ETCD_REQUEST_DURATION: MetricDef = MetricDef {
    name: "tapio.etcd.request.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "Time of every gRPC request/response call on a watched etcd process's plaintext client port (probes.etcd.client_ports), from the read(2) that brought its HTTP/2 HEADERS frame to the write(2) that ended its response stream, log2 buckets in the kernel; long-lived streams (Watch, LeaseKeepAlive) are not timed.",
    attributes: &[],
};

pub const OOM_KILLS: MetricDef = MetricDef {
    name: "tapio.oom.kills",
    unit: "{kill}",
    instrument: Instrument::Counter,
    description: "Processes the kernel's OOM killer chose as victims (mark_victim), counted per CPU in the kernel; kills whose log record was lost are counted too.",
    attributes: &[],
};

/// Tapio's self-telemetry metrics (`otel::metrics::self_telemetry`).
pub const SYSTEMD_UNIT_PROCESSES: MetricDef = MetricDef {
    name: "tapio.systemd.unit.processes",
    unit: "{process}",
    instrument: Instrument::Gauge,
    description: "Live processes of each running systemd unit (its cgroup and the cgroups below it), counted at each metric export.",
    attributes: &[attr::TAPIO_SYSTEMD_UNIT, attr::TAPIO_SYSTEMD_SLICE],
};

pub const SELF_METRICS: &[MetricDef] = &[
    EVENTS_RECEIVED,
    EVENTS_LOST,
    EXPORT_SENT,
    EXPORT_DROPPED,
    EXPORT_FAILURES,
    EXPORT_QUEUE_LENGTH,
    PIPELINE_LATENCY,
    PROBE_ATTACHED,
    CONFIG_RELOADS,
    OPAMP_EXCHANGES,
];

/// Every metric Tapio exports.
pub const METRICS: &[MetricDef] = &[
    EVENTS_RECEIVED,
    EVENTS_LOST,
    EXPORT_SENT,
    EXPORT_DROPPED,
    EXPORT_FAILURES,
    EXPORT_QUEUE_LENGTH,
    PIPELINE_LATENCY,
    PROBE_ATTACHED,
    CONFIG_RELOADS,
    OPAMP_EXCHANGES,
    TCP_CONNECT_DURATION,
    DNS_LOOKUP_DURATION,
    DNS_ENCRYPTED_CONNECTIONS,
    XDP_PACKETS,
    XDP_BYTES,
    LSM_DECISIONS,
    LSM_RULES,
    TC_PACKETS,
    TC_BYTES,
    TC_LB_CONNECTIONS,
    TC_LB_FAILURES,
    TC_CIRCUIT_BREAKER_STATE,
    TC_CHAOS_DROPPED,
    OOM_KILLS,
    IO_URING_OPERATIONS,
    IO_URING_DURATION,
    MEMORY_ALLOCATIONS,
    MEMORY_ALLOCATED,
    ETCD_WAL_FSYNC_DURATION,
    ETCD_REQUEST_DURATION,
    SYSTEMD_UNIT_PROCESSES,
];

/// Every log event name, with what it means.
pub const LOG_EVENTS: &[(&str, &str)] = &[
    (
        event::PROCESS_EXEC,
        "A process replaced its image (execve).",
    ),
    (event::PROCESS_EXIT, "The last thread of a process exited."),
    (
        event::PROCESS_FORK,
        "A process created a new process (not a thread).",
    ),
    (
        event::NETWORK_CONNECTION_CLOSE,
        "An established TCP connection closed: direction, duration, payload bytes.",
    ),
    (
        event::SECURITY_DDOS_MITIGATION,
        "The XDP filter auto-blocked a source over its SYN rate (WARN, `started`), or the block expired (INFO, `ended`, with the packets it dropped).",
    ),
    (
        event::SECURITY_POLICY_DECISION,
        "An enforcement rule matched: WARN when it denied (EPERM), INFO when it audited (allowed).",
    ),
    (
        event::NETWORK_FLOW_CLASSIFIED,
        "The tc probe decided a flow's L7 protocol (with the TLS server name); only with probes.tc.flow_logs.",
    ),
    (
        event::NETWORK_CIRCUIT_BREAKER_STATE_CHANGE,
        "A load-balancer backend's circuit breaker opened (WARN), went half-open or closed (INFO).",
    ),
    (
        event::TAPIO_CONFIG_RELOAD,
        "Tapio re-read its config file: the new policy is in force (INFO), or it was rejected and the previous policy stays (ERROR, with the reason in the body).",
    ),
    (
        event::TAPIO_TASK_FAILED,
        "One of Tapio's tasks (a probe's reader, the exporter, the config watcher, /metrics, OpAMP) panicked or stopped (ERROR); Tapio then exits non-zero so its supervisor restarts it.",
    ),
    (
        event::SECURITY_CREDENTIALS_CHANGE,
        "A process's uids/gids or capabilities changed: set*id syscalls and exec, and with a commit_creds hook (fentry/kprobe) every path (capset, unshare, setns...) (WARN when it gains root or capabilities).",
    ),
    (
        event::SECURITY_CAPABILITY_USE,
        "A process exercised a capability (granted or denied); once per process, capability and outcome.",
    ),
    (
        event::SECURITY_PTRACE,
        "ptrace attach/seize or memory/register writes into another process (WARN).",
    ),
    (
        event::SECURITY_PROCESS_VM_WRITEV,
        "A process wrote into another process's memory (WARN).",
    ),
    (
        event::SECURITY_MEMFD_EXEC,
        "exec of a file with no name on disk: a memfd or an unlinked tmpfs file (WARN).",
    ),
    (
        event::SECURITY_MEMORY_WX,
        "A process mapped memory writable and executable; first time per process (WARN).",
    ),
    (
        event::SECURITY_MODULE_LOAD,
        "A kernel module load (init_module/finit_module) (WARN).",
    ),
    (
        event::SECURITY_MODULE_REQUEST,
        "The kernel asked modprobe for a module (request_module auto-loading: a socket family, filesystem type...); once per process and name (WARN when the process is not root).",
    ),
    (
        event::SECURITY_BPF_LOAD,
        "Another process loaded a BPF program (Tapio's own loads are not reported).",
    ),
    (
        event::SECURITY_FILE_CHANGE,
        "A watched file was written, truncated, renamed, unlinked, chmod'ed or chown'ed (WARN).",
    ),
    (
        event::KERNEL_OOM_KILL,
        "The kernel's OOM killer chose a victim and sent it SIGKILL (WARN): victim, trigger, memory figures, container and pod.",
    ),
    (
        event::KERNEL_IO_URING_CREATE,
        "A process set up an io_uring (io_uring_setup): queue sizes and setup flags; WARN with sqpoll (a kernel thread then does its I/O without any syscall).",
    ),
    (
        event::SYSTEMD_UNIT_START,
        "The first process entered a systemd unit's cgroup: unit, slice, first pid.",
    ),
    (
        event::SYSTEMD_UNIT_STOP,
        "A systemd unit's cgroup was removed: lifetime, exits, failed exits and OOM kills of its processes (WARN when any failed).",
    ),
    (
        event::NETWORK_NAMESPACE_CREATE,
        "A network namespace was made (unshare or clone with CLONE_NEWNET): its inode, the creator, the namespace it came from.",
    ),
    (
        event::NETWORK_NAMESPACE_DELETE,
        "A network namespace Tapio tracked was freed by the kernel (its last process and mount gone).",
    ),
    (
        event::NETWORK_INTERFACE_CREATE,
        "A network interface appeared (rtnetlink RTM_NEWLINK): name, index, kind, namespace.",
    ),
    (
        event::NETWORK_INTERFACE_DELETE,
        "A network interface was removed (rtnetlink RTM_DELLINK).",
    ),
    (
        event::NETWORK_INTERFACE_MOVE,
        "A network interface moved to another network namespace: from, to, its new index.",
    ),
    (
        event::NETWORK_INTERFACE_UP,
        "A network interface was set administratively up (IFF_UP).",
    ),
    (
        event::NETWORK_INTERFACE_DOWN,
        "A network interface was set administratively down.",
    ),
    (
        event::NETWORK_ADDRESS_ADD,
        "An address was added to an interface (rtnetlink RTM_NEWADDR).",
    ),
    (
        event::NETWORK_ADDRESS_DELETE,
        "An address was removed from an interface (RTM_DELADDR).",
    ),
    (
        event::NETWORK_ROUTE_ADD,
        "A route was added or replaced (RTM_NEWROUTE; not the kernel's own per-address routes).",
    ),
    (
        event::NETWORK_ROUTE_DELETE,
        "A route was removed (RTM_DELROUTE).",
    ),
    (
        event::CNI_PLUGIN_EXEC,
        "A CNI plugin was executed: plugin, CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME from its environment.",
    ),
];

/// Every span name, with what it covers.
pub const SPANS: &[(&str, &str)] = &[
    (
        span::TCP_CONNECT,
        "Outbound TCP connect: SYN sent to established or failure.",
    ),
    (
        span::DNS_QUERY,
        "A DNS query to its response or timeout, UDP or TCP.",
    ),
    (
        span::ETCD_WAL_FSYNC,
        "An etcd WAL sync (fdatasync/fsync of a *.wal file) slower than probes.etcd.slow_threshold.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.extend(LOG_EVENTS.iter().chain(SPANS).map(|(n, _)| *n));
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(before, names.len());
    }

    /// The README's signal table is written from this one; keep them equal.
    #[test]
    fn readme_lists_every_signal() {
        let readme = include_str!("../../../README.md");
        for m in METRICS {
            assert!(
                readme.contains(m.name),
                "README does not list metric {}",
                m.name
            );
        }
        for (n, _) in LOG_EVENTS.iter().chain(SPANS) {
            assert!(readme.contains(n), "README does not list event {n}");
        }
    }

    /// Every attribute name outside `tapio.` must be one the OpenTelemetry
    /// semantic-conventions registry defines (PyPI
    /// `opentelemetry-semantic-conventions`, which `make deps` installs):
    /// anything else belongs under `tapio.`.
    #[test]
    fn attribute_names_outside_tapio_are_semconv() {
        let src = include_str!("names.rs");
        let start = src.find("pub mod attr {").expect("mod attr");
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").expect("end of mod attr")];
        let ours: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split('"').nth(1))
            .filter(|n| !n.starts_with("tapio."))
            .collect();
        assert!(ours.len() > 20, "parsed only {ours:?}");
        let script = "import importlib, pkgutil\n\
            for base in ('opentelemetry.semconv.attributes', 'opentelemetry.semconv._incubating.attributes'):\n\
            \x20   pkg = importlib.import_module(base)\n\
            \x20   for m in pkgutil.iter_modules(pkg.__path__):\n\
            \x20       for k, v in vars(importlib.import_module(base + '.' + m.name)).items():\n\
            \x20           if k.isupper() and isinstance(v, str): print(v)\n";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "the semconv registry is not importable (pip install opentelemetry-semantic-conventions; `make deps` does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let registry: std::collections::HashSet<&str> =
            std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert!(
            registry.len() > 500,
            "registry too small: {}",
            registry.len()
        );
        let unknown: Vec<&&str> = ours.iter().filter(|n| !registry.contains(**n)).collect();
        assert!(
            unknown.is_empty(),
            "not semantic-convention attributes (rename them under tapio.): {unknown:?}"
        );
    }
}
