//! Compiles every `ebpf/*.bpf.c` with clang into `$OUT_DIR/<name>.bpf.o`;
//! `src/bpf_objects.rs` embeds them, so the `tapio` binary is all a node needs.
//!
//! The clang binary is `$TAPIO_CLANG` if set, else the first of `clang-19`,
//! `clang` found on PATH; the one used is written to `$OUT_DIR/clang-used.txt`
//! and reported by `tapio version`.
use anyhow::{bail, Context, Result};
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

fn find_clang() -> Result<String> {
    println!("cargo:rerun-if-env-changed=TAPIO_CLANG");
    if let Ok(c) = env::var("TAPIO_CLANG") {
        return Ok(c);
    }
    for cand in ["clang-19", "clang"] {
        if Command::new(cand)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(cand.to_string());
        }
    }
    bail!("no clang found: install clang-19 (apt-get install clang-19) or set TAPIO_CLANG")
}

fn main() -> Result<()> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("..");
    let ebpf = root.join("ebpf");
    let shared_inc = root.join("shared").join("include");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let clang = find_clang()?;

    println!("cargo:rerun-if-changed={}", ebpf.display());
    println!("cargo:rerun-if-changed={}", ebpf.join("include").display());
    println!(
        "cargo:rerun-if-changed={}",
        shared_inc.join("tapio").join("events.h").display()
    );

    let mut sources: Vec<PathBuf> = fs::read_dir(&ebpf)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, src, &ebpf.join("include"), &shared_inc, &out)?;
    }
    fs::write(out.join("clang-used.txt"), &clang)?;
    Ok(())
}

fn compile(clang: &str, src: &Path, inc: &Path, shared_inc: &Path, out: &Path) -> Result<()> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".c"))
        .context("bad source name")?;
    let obj = out.join(format!("{name}.o"));
    let status = Command::new(clang)
        .args([
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(inc)
        .arg("-I")
        .arg(shared_inc)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&obj)
        .status()
        .with_context(|| format!("running {clang}"))?;
    if !status.success() {
        bail!("{clang} failed on {}", src.display());
    }
    Ok(())
}
