//! `tapio run`: load and attach the enabled probes, read their ring
//! buffers, export, and shut down cleanly.

use crate::policy::{Policies, PolicyTarget};
use crate::reload::Reloader;
use crate::supervise::{self, Task, Watch};
use crate::{
    clock, config::Settings, enrich::Enricher, export::Exporter, features, otel, probes, reader,
    telemetry::Telemetry,
};
use std::future::Future;
use std::path::PathBuf;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "not permitted to load BPF programs: run as root, or grant CAP_BPF and CAP_PERFMON \
         (CAP_SYS_ADMIN on kernels before 5.8)"
    )]
    NotPrivileged,
    #[error(
        "this kernel has no BTF at {}: Tapio's probes are CO-RE and need a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (5.4 or later)",
        features::BTF_PATH
    )]
    NoBtf,
    #[error("cannot read kernel BTF: {0}")]
    Btf(#[from] aya::BtfError),
    #[error(transparent)]
    Probe(#[from] probes::LoadError),
    #[error("no probe could be started (see the warnings above)")]
    NoProbes,
    #[error("exporter: {0}")]
    Sink(#[from] crate::export::SinkError),
    #[error("ring buffer reader: {0}")]
    Io(#[from] std::io::Error),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Opamp(#[from] crate::opamp::OpampError),
    #[error("{task} failed: {why}")]
    TaskFailed { task: Task, why: String },
    /// Checked at config validation too; here the cgroup may have gone
    /// since.
    #[error("probes.scope.cgroup: {0}")]
    Scope(String),
    #[error("exporters.prometheus: cannot listen on {addr}: {source}")]
    Prometheus {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A probe that is running: its object keeps the programs attached.
struct Running {
    name: &'static str,
    variant: &'static str,
    _ebpf: aya::Ebpf,
}

/// What starting a probe needs.
struct StartCtx<'a> {
    btf: &'a aya::Btf,
    telemetry: &'a std::sync::Arc<Telemetry>,
    stop: &'a CancellationToken,
    watch: &'a Watch,
    readers: &'a mut JoinSet<()>,
    running: &'a mut Vec<Running>,
    /// Probes whose policy follows the config file.
    policies: &'a mut Vec<Box<dyn PolicyTarget>>,
}

impl StartCtx<'_> {
    /// Load and attach `spec` unless disabled, and start reading its ring
    /// buffer with the handler `make` builds. A probe the kernel cannot run
    /// is skipped with a warning, unless it was enabled explicitly.
    fn start<H: reader::RecordHandler>(
        &mut self,
        spec: &probes::ProbeSpec,
        enabled: Option<bool>,
        ring: probes::RingConfig,
        wanted: &dyn Fn(&str) -> bool,
        interval: std::time::Duration,
        make: impl FnOnce(
            &mut probes::Loaded,
            std::sync::Arc<crate::telemetry::ProbeStats>,
        ) -> Result<H, probes::LoadError>,
    ) -> Result<(), RunError> {
        if enabled == Some(false) {
            return Ok(());
        }
        let loaded = probes::load(spec, ring, Some(self.btf), true, wanted);
        self.start_loaded(spec.name, loaded, enabled, interval, make)
    }

    /// Start reading a probe that its own code loaded and attached (probes
    /// attached to interfaces, whose targets come from config).
    fn start_loaded<H: reader::RecordHandler>(
        &mut self,
        name: &'static str,
        loaded: Result<probes::Loaded, probes::LoadError>,
        enabled: Option<bool>,
        interval: std::time::Duration,
        make: impl FnOnce(
            &mut probes::Loaded,
            std::sync::Arc<crate::telemetry::ProbeStats>,
        ) -> Result<H, probes::LoadError>,
    ) -> Result<(), RunError> {
        let mut loaded = match loaded {
            Ok(l) => l,
            Err(e) if enabled == Some(true) => return Err(e.into()),
            Err(e) => {
                tracing::warn!("skipping probe: {e}");
                return Ok(());
            }
        };
        for (variant, why) in &loaded.skipped {
            tracing::warn!(probe = name, "{variant} unavailable, falling back: {why}");
        }
        let stats = self.telemetry.probe(name);
        stats.set_attach_type(loaded.variant);
        stats.set_kernel_lost_reader(loaded.lost_reader(name)?);
        stats.set_recursion_reader(loaded.recursion_reader());
        let rb = loaded.take_ringbuf(name)?;
        let handler = make(&mut loaded, stats)?;
        let handler = FaultHook {
            inner: handler,
            armed: supervise::fault_injected(&format!("reader:{name}")),
            read_error: supervise::fault_injected(&format!("ringbuf:{name}")),
        };
        let s = self.stop.clone();
        self.readers.spawn(self.watch.watched(
            Task::of_probe("reader", name),
            reader::run(rb, handler, interval, s),
        ));
        self.running.push(Running {
            name,
            variant: loaded.variant,
            _ebpf: loaded.ebpf,
        });
        Ok(())
    }

    /// Let the config file change `target`'s policy while it runs.
    fn follow_policy(&mut self, target: Box<dyn PolicyTarget>) {
        self.policies.push(target);
    }
}

/// A reader's handler, with the `TAPIO_TEST_FAULT=reader:<probe>` test
/// hook: armed, it panics on the probe's first record, as a handler bug
/// would; and `ringbuf:<probe>`: the first wake's read fails, as an
/// epoll error on the ring buffer's fd would.
struct FaultHook<H> {
    inner: H,
    armed: bool,
    read_error: bool,
}

impl<H: reader::RecordHandler> reader::RecordHandler for FaultHook<H> {
    fn on_wake(&mut self) {
        self.inner.on_wake();
    }

    fn end_wake(&mut self) {
        self.inner.end_wake();
    }

    fn injected_read_error(&mut self) -> Option<std::io::Error> {
        self.read_error
            .then(|| std::io::Error::other("TAPIO_TEST_FAULT: reading the ring buffer failed"))
    }

    fn handle(&mut self, record: &[u8]) {
        if self.armed {
            panic!("TAPIO_TEST_FAULT: the reader's handler panics on its first record");
        }
        self.inner.handle(record);
    }
}

/// Run until `shutdown` resolves, then drain the ring buffers and flush.
/// With `source` (the config file and what it held at start), policy
/// changes in the file are applied while running.
pub async fn run(
    settings: Settings,
    source: Option<(PathBuf, crate::config::Config)>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if !features::privileged() {
        return Err(RunError::NotPrivileged);
    }
    if !features::has_btf() {
        return Err(RunError::NoBtf);
    }
    features::raise_memlock();
    features::mount_pseudo_filesystems();
    let btf = aya::Btf::from_sys_fs()?;

    let telemetry = Telemetry::new(clock::unix_ns());
    let resource = otel::resource::build(&settings.resource);
    let stop = CancellationToken::new();
    let (watch, mut failures) = Watch::new(stop.clone());
    let mut exporter = Exporter::start(&settings, telemetry.clone(), resource)?;
    for e in settings.own_endpoints() {
        if let Some(w) = crate::config::settings::plaintext_warning(&e) {
            tracing::warn!("{w}");
        }
    }
    exporter.supervise(&watch);
    // Bound before the probes load: a taken port fails the start at once.
    let mut prometheus = None;
    if let Some(addr) = settings.prometheus {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| RunError::Prometheus { addr, source })?;
        tracing::info!(%addr, "serving Prometheus metrics on /metrics");
        prometheus = Some(
            crate::export::prometheus::Server::start(
                listener,
                exporter.metrics(),
                stop.clone(),
                watch.clone(),
            )
            .map_err(|source| RunError::Prometheus { addr, source })?,
        );
    }
    let mut readers = JoinSet::new();
    let mut running: Vec<Running> = Vec::new();
    let mut policies: Vec<Box<dyn PolicyTarget>> = Vec::new();

    let mut ctx = StartCtx {
        btf: &btf,
        telemetry: &telemetry,
        stop: &stop,
        watch: &watch,
        readers: &mut readers,
        running: &mut running,
        policies: &mut policies,
    };

    let scope = match &settings.probes.scope.cgroup {
        Some(cg) => {
            let s = probes::scope::resolve_here(cg).map_err(RunError::Scope)?;
            tracing::info!(
                cgroup = %cg,
                id = s.id,
                level = s.level,
                "probes.scope: process, network and dns record only this cgroup and below"
            );
            Some(s)
        }
        None => None,
    };

    let pcfg = settings.probes.process.clone();
    let ring = probes::RingConfig::new(pcfg.ring_buffer_size.0, pcfg.wakeup_interval).scoped(scope);
    let wanted = probes::process::Handler::wanted(&pcfg);
    ctx.start(
        &probes::process::SPEC,
        pcfg.enabled,
        ring,
        &wanted,
        pcfg.wakeup_interval,
        |_, stats| {
            Ok(probes::process::Handler {
                emitter: exporter.emitter_for(probes::process::NAME).stashing(),
                stats: crate::telemetry::ReaderStats::new(stats),
                enricher: Enricher::default(),
                clock: clock::WallClock::sample(),
                config: pcfg.clone(),
            })
        },
    )?;

    let ncfg = settings.probes.network.clone();
    let ring = probes::RingConfig::new(ncfg.ring_buffer_size.0, ncfg.wakeup_interval)
        .sampled(ncfg.sample_rate, ncfg.slow_threshold)
        .scoped(scope);
    ctx.start(
        &probes::network::SPEC,
        ncfg.enabled,
        ring,
        &|_| true,
        ncfg.wakeup_interval,
        |loaded, stats| {
            let hist =
                loaded.take_percpu_array(probes::network::NAME, probes::network::MAP_HIST)?;
            exporter.add_metric_producer(probes::network::histogram_producer(
                hist,
                telemetry.start_unix_ns,
            ));
            Ok(probes::network::Handler {
                emitter: exporter.emitter_for(probes::network::NAME).stashing(),
                stats: crate::telemetry::ReaderStats::new(stats),
                enricher: Enricher::default(),
                clock: clock::WallClock::sample(),
                ids: otel::traces::IdGenerator::default(),
            })
        },
    )?;

    let dcfg = settings.probes.dns.clone();
    let ring = probes::RingConfig::new(dcfg.ring_buffer_size.0, dcfg.wakeup_interval).scoped(scope);
    ctx.start(
        &probes::dns::SPEC,
        dcfg.enabled,
        ring,
        &|_| true,
        dcfg.wakeup_interval,
        |loaded, stats| {
            let ports: Vec<(u16, u8)> = dcfg.ports.iter().map(|&p| (p, 1)).collect();
            loaded.fill_port_array(probes::dns::NAME, probes::dns::MAP_PORTS, &ports)?;
            if [probes::dns::VARIANT_TCP, probes::dns::VARIANT_TCP_NO_OWNER]
                .contains(&loaded.variant)
            {
                loaded.set_u32(probes::dns::NAME, probes::dns::MAP_CFG, 0, 1)?;
                // Encrypted DNS is read by the cgroup_skb programs only.
                let enc = &dcfg.encrypted;
                loaded.fill_port_array(
                    probes::dns::NAME,
                    probes::dns::MAP_ENC_PORTS,
                    &probes::encrypted_dns::port_kinds(enc),
                )?;
                loaded.fill_doh_names(probes::dns::NAME, probes::dns::MAP_DOH_NAMES, enc)?;
            }
            let histograms = probes::dns::DnsHistograms::default();
            exporter.add_metric_producer(probes::dns::histogram_producer(
                histograms.clone(),
                telemetry.start_unix_ns,
            ));
            let encrypted = probes::dns::EncryptedCounts::default();
            exporter.add_metric_producer(probes::dns::encrypted_producer(
                encrypted.clone(),
                telemetry.start_unix_ns,
            ));
            Ok(probes::dns::Handler::new(
                exporter.emitter_for(probes::dns::NAME).stashing(),
                stats,
                dcfg.clone(),
                histograms,
            )
            .counting_encrypted(encrypted))
        },
    )?;

    let xcfg = settings.probes.xdp.clone();
    if xcfg.enabled != Some(false) && !xcfg.interfaces.is_empty() {
        let ring = probes::RingConfig::new(xcfg.ring_buffer_size.0, xcfg.wakeup_interval);
        let started = probes::xdp::start(&xcfg, ring, Some(&btf), &settings.own_endpoints());
        let mut policy = None;
        let loaded = started.map(|s| {
            policy = Some((s.policy, s.attached));
            s.loaded
        });
        let names = policy
            .as_ref()
            .map(|(_, att)| probes::xdp::if_names(att))
            .unwrap_or_default();
        // Explicitly configured interfaces make the probe wanted: fail
        // rather than run without the filter the operator asked for.
        let enabled = Some(true);
        ctx.start_loaded(
            probes::xdp::NAME,
            loaded,
            enabled,
            xcfg.wakeup_interval,
            |loaded, stats| {
                let name = probes::xdp::NAME;
                let mut map = |m| {
                    loaded
                        .ebpf
                        .take_map(m)
                        .ok_or(probes::LoadError::MissingMap {
                            probe: name,
                            map: m,
                        })
                };
                let counters = map(probes::xdp::MAP_COUNTERS)?;
                let counters = aya::maps::PerCpuArray::try_from(counters).map_err(|source| {
                    probes::LoadError::Map {
                        probe: name,
                        map: probes::xdp::MAP_COUNTERS,
                        source,
                    }
                })?;
                exporter.add_metric_producer(probes::xdp::counters_producer(
                    counters,
                    names.clone(),
                    telemetry.start_unix_ns,
                ));
                let autoblock = map(probes::xdp::MAP_AUTOBLOCK)?;
                let autoblock = aya::maps::HashMap::try_from(autoblock).map_err(|source| {
                    probes::LoadError::Map {
                        probe: name,
                        map: probes::xdp::MAP_AUTOBLOCK,
                        source,
                    }
                })?;
                Ok(probes::xdp::Handler {
                    emitter: exporter.emitter_for(probes::xdp::NAME),
                    stats,
                    clock: clock::WallClock::sample(),
                    names: names.clone(),
                    autoblock,
                    last_sweep: std::time::Instant::now(),
                })
            },
        )?;
        if let Some((p, _)) = policy {
            ctx.follow_policy(Box::new(p));
        }
    }

    // Enforcement, before the security probe so its loads are not
    // reported as another process's.
    let lcfg = settings.probes.lsm.clone();
    let mut lsm_links = Vec::new();
    if lcfg.enabled == Some(true) || (lcfg.enabled.is_none() && !lcfg.policy.rules.is_empty()) {
        let ring = probes::RingConfig::new(lcfg.ring_buffer_size.0, lcfg.wakeup_interval);
        let config_path = source.as_ref().map(|(p, _)| p.as_path());
        let started = probes::lsm::start(&lcfg, ring, Some(&btf), config_path);
        let mut held = None;
        // Unavailable hooks are logged by start_loaded (as skipped).
        let loaded = started.map(|s| {
            held = Some((s.policy, s.links));
            s.loaded
        });
        let state = held.as_ref().map(|(p, _)| p.state.clone());
        let counters = held.as_ref().map(|(p, _)| probes::lsm::counters(p));
        // Rules were configured: running without them is not an option.
        ctx.start_loaded(
            probes::lsm::NAME,
            loaded,
            Some(true),
            lcfg.wakeup_interval,
            |_, stats| {
                let state = state.clone().unwrap_or_default();
                if let Some(c) = counters.clone() {
                    exporter.add_metric_producer(probes::lsm::metrics_producer(
                        c,
                        state.clone(),
                        telemetry.start_unix_ns,
                    ));
                }
                Ok(probes::lsm::Handler {
                    emitter: exporter.emitter_for(probes::lsm::NAME),
                    stats,
                    clock: clock::WallClock::sample(),
                    state,
                })
            },
        )?;
        if let Some((p, links)) = held {
            ctx.follow_policy(Box::new(p));
            lsm_links = links;
        }
    }

    let kcfg = settings.probes.kernel.clone();
    if kcfg.oom_kill || kcfg.io_uring || kcfg.memory_sample_every > 0 {
        let ring = probes::RingConfig::new(kcfg.ring_buffer_size.0, kcfg.wakeup_interval)
            .sampled(kcfg.io_uring_sample_rate, std::time::Duration::ZERO);
        ctx.start(
            &probes::kernel::spec(&kcfg),
            kcfg.enabled,
            ring,
            &|prog| probes::kernel::wanted(&kcfg, prog),
            kcfg.wakeup_interval,
            |loaded, stats| {
                if kcfg.oom_kill {
                    let kills = loaded
                        .take_percpu_array(probes::kernel::NAME, probes::kernel::MAP_OOM_KILLS)?;
                    exporter.add_metric_producer(probes::kernel::kills_producer(
                        kills,
                        telemetry.start_unix_ns,
                    ));
                }
                if kcfg.io_uring {
                    let ops = loaded.take_percpu_array(
                        probes::kernel::NAME,
                        probes::kernel::MAP_IO_URING_OPS,
                    )?;
                    let hist = loaded.take_percpu_array(
                        probes::kernel::NAME,
                        probes::kernel::MAP_IO_URING_HIST,
                    )?;
                    exporter.add_metric_producer(probes::kernel::io_uring_producer(
                        ops,
                        hist,
                        telemetry.start_unix_ns,
                    ));
                }
                if kcfg.memory_sample_every > 0 {
                    let maps = probes::memory::configure(loaded, kcfg.memory_sample_every)?;
                    exporter.add_metric_producer(probes::memory::producer(
                        maps,
                        kcfg.memory_sample_every,
                        telemetry.start_unix_ns,
                    ));
                }
                Ok(probes::kernel::Handler {
                    emitter: exporter.emitter_for(probes::kernel::NAME),
                    stats,
                    enricher: Enricher::default(),
                    clock: clock::WallClock::sample(),
                })
            },
        )?;
    } else if kcfg.enabled == Some(true) {
        tracing::warn!(
            "probes.kernel is enabled but oom_kill, io_uring and memory_sample_every are off: nothing to run"
        );
    }

    let ecfg = settings.probes.etcd.clone();
    if !ecfg.executables.is_empty() {
        let ring = probes::RingConfig::new(ecfg.ring_buffer_size.0, ecfg.wakeup_interval)
            .sampled(1.0, ecfg.slow_threshold);
        ctx.start(
            probes::etcd::spec(&ecfg),
            ecfg.enabled,
            ring,
            &|_| true,
            ecfg.wakeup_interval,
            |loaded, stats| {
                probes::etcd::configure(loaded, &ecfg)?;
                let hist =
                    loaded.take_percpu_array(probes::etcd::NAME, probes::etcd::MAP_WAL_HIST)?;
                exporter.add_metric_producer(probes::etcd::hist_producer(
                    &otel::names::ETCD_WAL_FSYNC_DURATION,
                    hist,
                    telemetry.start_unix_ns,
                ));
                let req =
                    loaded.take_percpu_array(probes::etcd::NAME, probes::etcd::MAP_REQ_HIST)?;
                exporter.add_metric_producer(probes::etcd::hist_producer(
                    &otel::names::ETCD_REQUEST_DURATION,
                    req,
                    telemetry.start_unix_ns,
                ));
                Ok(probes::etcd::Handler {
                    emitter: exporter.emitter(),
                    stats,
                    clock: clock::WallClock::sample(),
                    ids: Default::default(),
                })
            },
        )?;
    }
    let ucfg = settings.probes.systemd.clone();
    let ring = probes::RingConfig::new(ucfg.ring_buffer_size.0, ucfg.wakeup_interval);
    ctx.start(
        &probes::systemd::SPEC,
        ucfg.enabled,
        ring,
        &|_| true,
        ucfg.wakeup_interval,
        |loaded, stats| {
            let units = probes::systemd::SharedUnits::default();
            // Without a cgroup v2 mount there are no unit cgroups to see,
            // and the tracepoints would stay silent.
            if let Some(root) = probes::cgroup2_root().map(PathBuf::from) {
                let n = probes::systemd::adopt_existing(loaded, &root, &ucfg.slices, &units)?;
                tracing::info!(probe = "systemd", units = n, "tracking running units");
                exporter
                    .add_metric_producer(probes::systemd::processes_producer(units.clone(), root));
            }
            Ok(probes::systemd::Handler {
                emitter: exporter.emitter(),
                stats,
                enricher: Enricher::default(),
                clock: clock::WallClock::sample(),
                slices: ucfg.slices.clone(),
                units,
            })
        },
    )?;

    let ncfg = settings.probes.netns.clone();
    if ncfg.enabled == Some(true) {
        let ring = probes::RingConfig::new(ncfg.ring_buffer_size.0, ncfg.wakeup_interval);
        let loaded = probes::netns::load(&ncfg, ring, Some(&btf));
        // Listening before the existing namespaces get their ids, so no
        // change in between is missed.
        let listener = if ncfg.rtnetlink {
            probes::netns::rtnl::Listener::new()
                .map_err(|e| tracing::warn!(probe = "netns", "no rtnetlink listener: {e}"))
                .ok()
        } else {
            None
        };
        let mut shared = None;
        ctx.start_loaded(
            probes::netns::NAME,
            loaded,
            ncfg.enabled,
            ncfg.wakeup_interval,
            |_, stats| {
                let mut tracker = probes::netns::Tracker::new(listener.is_some());
                if listener.is_some() {
                    let n = tracker.adopt_existing();
                    tracing::info!(
                        probe = "netns",
                        namespaces = n,
                        "tracking network namespaces"
                    );
                }
                shared = Some((tracker.table.clone(), stats.clone()));
                Ok(probes::netns::Handler {
                    emitter: exporter.emitter_for(probes::netns::NAME),
                    stats,
                    enricher: Enricher::default(),
                    clock: clock::WallClock::sample(),
                    tracker,
                })
            },
        )?;
        if let (Some(l), Some((table, stats))) = (listener, shared) {
            let w = probes::netns::Watcher::new(
                exporter.emitter_for(probes::netns::NAME),
                stats,
                table,
            );
            watch.spawn_infallible(
                Task::of_probe("rtnetlink", probes::netns::NAME),
                probes::netns::run_listener(w, l, stop.clone()),
            );
        }
    }

    // Last, so Tapio's own BPF loads are done before it reports others'.
    let scfg = settings.probes.security.clone();
    let ring = probes::RingConfig::new(scfg.ring_buffer_size.0, scfg.wakeup_interval);
    let swanted = probes::security::Handler::wanted(&scfg);
    ctx.start(
        &probes::security::spec(&scfg),
        scfg.enabled,
        ring,
        &swanted,
        scfg.wakeup_interval,
        |loaded, stats| {
            // Re-resolved at every start: inode numbers change when a file
            // is replaced.
            let watches = probes::security::resolve_watches(&scfg.watch_paths);
            for (path, why) in &watches.skipped {
                tracing::warn!(probe = "security", "not watching {path}: {why}");
            }
            probes::security::configure(loaded, &scfg, &watches)?;
            Ok(probes::security::Handler {
                emitter: exporter.emitter_for(probes::security::NAME),
                stats,
                enricher: Enricher::default(),
                clock: clock::WallClock::sample(),
                watch_paths: watches.paths,
            })
        },
    )?;

    let tcfg = settings.probes.tc.clone();
    if tcfg.enabled != Some(false) && !tcfg.interfaces.is_empty() {
        let ring = probes::RingConfig::new(tcfg.ring_buffer_size.0, tcfg.wakeup_interval);
        let loaded = probes::tc::load(
            &tcfg,
            &settings.probes.dns.encrypted,
            ring,
            Some(&btf),
            true,
        );
        let (loaded, ifnames) = match loaded {
            Ok((l, n)) => (Ok(l), std::sync::Arc::new(n)),
            Err(e) => (Err(e), Default::default()),
        };
        let mut shared = None;
        ctx.start_loaded(
            probes::tc::NAME,
            loaded,
            tcfg.enabled,
            tcfg.wakeup_interval,
            |loaded, stats| {
                let s = std::sync::Arc::new(std::sync::Mutex::new(
                    probes::tc::Shared::new(loaded, ifnames.clone())?
                        .protecting(settings.own_endpoints()),
                ));
                exporter.add_metric_producer(probes::tc::metric_producer(
                    s.clone(),
                    telemetry.start_unix_ns,
                ));
                shared = Some(s);
                Ok(probes::tc::Handler {
                    emitter: exporter.emitter_for(probes::tc::NAME),
                    stats,
                    clock: clock::WallClock::sample(),
                    ifnames: ifnames.clone(),
                    logs: tcfg.flow_logs,
                })
            },
        )?;
        if let Some(s) = shared {
            let mut target = probes::tc::TcTarget(s.clone());
            if let Err(e) = target.apply(&settings.probes) {
                // The programs count and classify without a policy; an
                // explicitly enabled probe must not run without its policy.
                if tcfg.enabled == Some(true) {
                    return Err(e.into());
                }
                tracing::error!("tc policy not applied: {e}");
            }
            ctx.follow_policy(Box::new(target));
            watch.spawn_infallible(
                Task::of_probe("breakers", probes::tc::NAME),
                probes::tc::run_breakers(s, exporter.emitter_for(probes::tc::NAME), stop.clone()),
            );
        }
    } else if tcfg.enabled == Some(true) {
        tracing::warn!("probes.tc is enabled but names no interfaces; not started");
    }

    // The kernel's BTF (parsed: ~9 MiB) is only needed to load programs,
    // and loading left ~17 MiB of freed heap that glibc keeps: give both
    // back before the steady state (README, "Memory").
    drop(btf);
    crate::heap::release_free_memory();
    if running.is_empty() {
        exporter.shutdown(settings.shutdown_timeout).await;
        return Err(RunError::NoProbes);
    }
    let summary: Vec<String> = running
        .iter()
        .map(|r| format!("{}={}", r.name, r.variant))
        .collect();
    tracing::info!(probes = %summary.join(","), sink = %exporter.sink_description(), "tapio ready");

    // One policy state for both sources: the watched file and OpAMP.
    let (path, file) = match source {
        Some((p, c)) => (Some(p), c),
        None => (None, crate::config::Config::default()),
    };
    let policies = std::sync::Arc::new(std::sync::Mutex::new(Policies::new(
        file,
        policies,
        telemetry.clone(),
        exporter.emitter(),
    )));
    if let Some(path) = path {
        let reloader = Reloader::new(path, policies.clone());
        watch.spawn_infallible(Task::new("reloader"), reloader.run(stop.clone()));
    }
    let mut opamp_task = None;
    if let Some(o) = &settings.opamp {
        let agent = crate::opamp::Agent::new(
            o,
            &otel::resource::build(&settings.resource),
            telemetry.start_unix_ns,
            policies.clone(),
            telemetry.clone(),
        )?;
        opamp_task = Some(watch.spawn_infallible(Task::new("opamp"), agent.run(stop.clone())));
    }

    let mut failed = Vec::new();
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down: draining ring buffers and flushing"),
        Some(f) = failures.next() => {
            failed.push(f);
            tracing::error!("shutting down after a task failure: draining ring buffers and flushing");
        }
    }
    stop.cancel();
    if let Some(t) = opamp_task {
        // Bounded: the AgentDisconnect has a one-second timeout.
        let _ = t.await;
    }
    while readers.join_next().await.is_some() {}
    if let Some(p) = prometheus {
        p.join().await;
    }
    // Failures while draining count too; each is reported before the last
    // flush so that it goes out with it.
    failed.extend(failures.drain());
    for f in &failed {
        report_failure(f, &telemetry, &exporter);
    }
    exporter.shutdown(settings.shutdown_timeout).await;
    // The export workers are judged only now that they are done.
    for f in failures.drain() {
        tracing::error!(task = %f.task, "task failed: {}", f.why);
        failed.push(f);
    }
    // `release` links detach here; `keep` links stay pinned.
    drop(lsm_links);
    drop(running);
    match failed.into_iter().next() {
        Some(f) => Err(RunError::TaskFailed {
            task: f.task,
            why: f.why,
        }),
        None => Ok(()),
    }
}

/// Log `f`, zero its probe's `tapio.probe.attached` and queue its
/// `tapio.task.failed` record.
fn report_failure(f: &supervise::Failure, telemetry: &Telemetry, exporter: &Exporter) {
    tracing::error!(
        task = %f.task,
        "task failed: {}; Tapio exits with a failure status so that its supervisor restarts it",
        f.why
    );
    if let (Some(p), "reader") = (f.task.probe, f.task.kind) {
        telemetry.probe(p).set_failed();
    }
    let now = clock::unix_ns();
    let mut emitter = exporter.emitter();
    crate::encode_log!(emitter, |enc| supervise::failure_log(enc, f, now));
}
