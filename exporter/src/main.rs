//! The `tapio` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};
use tapio::{agent, config, features, probes};

#[derive(Parser)]
#[command(name = "tapio", version, about = "eBPF → OpenTelemetry sidecar")]
struct Cli {
    /// Log filter for Tapio's own logs (stderr), e.g. `info`, `tapio=debug`.
    #[arg(long, global = true, env = "TAPIO_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the probes and export what they see until SIGINT/SIGTERM.
    Run {
        /// Configuration file (YAML). Without one: every default probe this
        /// kernel supports, exported per OTEL_* variables or to stdout.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// An OpenTelemetry collector's config: export to its OTLP receiver
        /// (gRPC preferred). An exporter in --config wins over it.
        #[arg(long)]
        collector_config: Option<PathBuf>,
    },
    /// Validate configuration files; print every error with its key path
    /// and line. Exits non-zero when any file is invalid.
    CheckConfig {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Which probes and attach types this kernel supports, and why not.
    Probes {
        /// Only these probes (e.g. `lsm security`); default: all. Every
        /// variant is loaded for real: all of them keep the verifier busy
        /// ~4 s on a 2-core VM, about a minute in an emulated guest.
        #[arg(value_name = "PROBE", value_parser = clap::builder::PossibleValuesParser::new(probe_names()))]
        only: Vec<String>,
    },
}

fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log);
    let result = match cli.command {
        Command::Run {
            config,
            collector_config,
        } => run(config, collector_config),
        Command::CheckConfig { files } => check_config(&files),
        Command::Probes { only } => probes_report(&only),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tapio: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The resolved settings, and the config file as written (the baseline for
/// live policy reloads).
fn load_settings(
    path: Option<&PathBuf>,
    collector: Option<&PathBuf>,
) -> Result<(config::Settings, config::Config), ExitCode> {
    let file = match path {
        Some(p) => config::load_trusted(p).map_err(|e| {
            eprint!("{}: {e}", p.display());
            ExitCode::from(2)
        })?,
        None => config::Config::default(),
    };
    let mut cfg = file.clone();
    if let Some(c) = collector {
        let ex = &cfg.exporters;
        if ex.otlp.is_none() && ex.otlphttp.is_none() && ex.stdout.is_none() {
            let text = std::fs::read_to_string(c).map_err(|e| {
                eprintln!("{}: {e}", c.display());
                ExitCode::from(2)
            })?;
            match config::collector::from_collector_yaml(&text) {
                Ok(config::collector::FromCollector::Grpc(o)) => cfg.exporters.otlp = Some(o),
                Ok(config::collector::FromCollector::Http(o)) => cfg.exporters.otlphttp = Some(o),
                Err(e) => {
                    eprintln!("{}: {e}", c.display());
                    return Err(ExitCode::from(2));
                }
            }
        }
    }
    let settings = cfg.resolve(&config::process_env).map_err(|errs| {
        eprint!("{}", config::ConfigErrors(errs));
        ExitCode::from(2)
    })?;
    Ok((settings, file))
}

fn run(path: Option<PathBuf>, collector: Option<PathBuf>) -> Result<ExitCode> {
    let (settings, file) = match load_settings(path.as_ref(), collector.as_ref()) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let source = path.map(|p| (p, file));
    // reqwest is built without a default TLS provider; pick ring, as tonic does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tapio::heap::keep_big_buffers_mapped();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker_threads)
        .enable_all()
        .thread_name("tapio")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Install the handlers now, not when the future is first polled:
        // a SIGTERM that arrives while probes load must still mean "flush
        // and exit", never the default "die".
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("watching SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        };
        agent::run(settings, source, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for f in files {
        match config::load_trusted(f)
            .map_err(|e| e.0)
            .and_then(|c| c.resolve(&config::process_env))
        {
            Ok(_) => println!("{}: ok", f.display()),
            Err(errs) => {
                ok = false;
                print!("{}: {}", f.display(), config::ConfigErrors(errs));
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Every name `tapio probes` reports on, in its order (clap checks the
/// names given against these).
fn probe_names() -> impl Iterator<Item = &'static str> {
    probes::ALL.iter().map(|s| s.name).chain([
        probes::xdp::NAME,
        probes::lsm::NAME,
        probes::tc::NAME,
    ])
}

fn probes_report(only: &[String]) -> Result<ExitCode> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|n| n == name);
    if features::privileged() {
        features::mount_pseudo_filesystems();
    }
    println!("kernel {}", features::kernel_release());
    println!("\nkernel features:");
    for (name, ok, why) in features::kernel_facts() {
        println!("  {name:<16} {:<4} {why}", yes(ok));
    }
    if !features::privileged() {
        println!("\nnot privileged: program types and probes cannot be probed (run as root)");
        return Ok(ExitCode::FAILURE);
    }
    features::raise_memlock();
    println!("\nprogram types:");
    for (name, r) in features::program_types() {
        match r {
            Ok(b) => println!("  {name:<30} {}", yes(b)),
            // The probe program itself was refused: as good as a no.
            Err(e) => println!("  {name:<30} no   {e}"),
        }
    }
    let btf = aya::Btf::from_sys_fs().ok();
    println!("\nprobes (each variant loaded for real, best first; nothing is attached):");
    let mut all_ok = true;
    for spec in probes::ALL.iter().filter(|s| wanted(s.name)) {
        for v in spec.variants {
            let single = std::slice::from_ref(v);
            let one = probes::ProbeSpec {
                variants: single,
                ..*spec
            };
            let ring = probes::RingConfig::new(4096, std::time::Duration::ZERO);
            match probes::load(&one, ring, btf.as_ref(), false, &|_| true) {
                Ok(_) => println!("  {:<10} {:<12} yes", spec.name, v.label),
                Err(probes::LoadError::NoVariant { reasons, .. }) => {
                    let why = reasons
                        .trim()
                        .trim_start_matches(&format!("{}: ", v.label))
                        .to_string();
                    println!("  {:<10} {:<12} no   {why}", spec.name, v.label);
                }
                Err(e) => {
                    all_ok = false;
                    println!("  {:<10} {:<12} no   {e}", spec.name, v.label);
                }
            }
        }
    }
    if wanted(probes::xdp::NAME) {
        all_ok &= xdp_report(btf.as_ref());
    }
    if wanted(probes::lsm::NAME) {
        all_ok &= lsm_report(btf.as_ref());
    }
    if wanted(probes::tc::NAME) {
        all_ok &= tc_report(btf.as_ref());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// XDP: the filter and its egress learner, loaded, not attached. Interface
/// probes attach where config says; what the kernel decides per interface
/// (native or generic XDP, tcx or clsact) shows in `tapio run`'s log and
/// `tapio.attach_type`.
fn xdp_report(btf: Option<&aya::Btf>) -> bool {
    let ring = probes::RingConfig::new(4096, std::time::Duration::ZERO);
    let tcx = aya::util::KernelVersion::current()
        .map(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
        .unwrap_or(false);
    let egress = if tcx { "tcx" } else { "clsact" };
    match probes::xdp::load_only(ring, btf) {
        Ok(_) => {
            println!(
                "  {:<10} {:<12} yes  egress learner via {egress}; native or generic XDP chosen per interface",
                probes::xdp::NAME,
                "xdp"
            );
            true
        }
        Err(e) => {
            println!("  {:<10} {:<12} no   {e}", probes::xdp::NAME, "xdp");
            false
        }
    }
}

/// Enforcement: each hook loads on its own; a refused hook means its rules
/// are refused at `tapio run`, with this reason.
fn lsm_report(btf: Option<&aya::Btf>) -> bool {
    let ring = probes::RingConfig::new(4096, std::time::Duration::ZERO);
    match probes::lsm::load(ring, btf) {
        Ok((_, _, refused)) => {
            for h in 1..tapio_shared::tapio_lsm_hook::TAPIO_LSM_HOOK_MAX {
                let name = probes::lsm::hook_name(h);
                match refused.get(&h) {
                    None => println!("  {:<10} {:<12} yes", probes::lsm::NAME, name),
                    Some(why) => println!("  {:<10} {:<12} no   {why}", probes::lsm::NAME, name),
                }
            }
            true
        }
        Err(e) => {
            println!("  {:<10} {:<12} no   {e}", probes::lsm::NAME, "all");
            false
        }
    }
}

/// The tc probe attaches to interfaces from config, so it is not in
/// `probes::ALL`: load its programs, and probe tcx and the fq qdisc
/// (latency injection) without attaching anything.
fn tc_report(btf: Option<&aya::Btf>) -> bool {
    use probes::tc;
    let ring = probes::RingConfig::new(4096, std::time::Duration::ZERO);
    let cfg = config::TcProbe::default();
    let ok = match tc::load(&cfg, &config::EncryptedDns::default(), ring, btf, false) {
        Ok((loaded, _)) => {
            let tcx = loaded
                .ebpf
                .program(tc::PROG_INGRESS)
                .and_then(|p| <&aya::programs::SchedClassifier>::try_from(p).ok())
                .and_then(|p| p.fd().ok())
                .is_some_and(|fd| tc::tcx_supported(std::os::fd::AsFd::as_fd(fd)));
            let why = if tcx {
                ""
            } else {
                "the kernel refused a tcx link (6.6+); clsact is used"
            };
            println!(
                "  {:<10} {:<12} {}   {why}",
                tc::NAME,
                tc::VARIANT_TCX,
                yes(tcx)
            );
            println!("  {:<10} {:<12} yes", tc::NAME, tc::VARIANT_CLSACT);
            true
        }
        Err(e) => {
            println!("  {:<10} {:<12} no   {e}", tc::NAME, "classifier");
            false
        }
    };
    let (fq, why) = tc::fq_available();
    println!(
        "  {:<10} {:<12} {}   latency-injection: {why}",
        tc::NAME,
        "edt-latency",
        yes(fq)
    );
    ok
}
