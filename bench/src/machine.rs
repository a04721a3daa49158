//! What the run ran on: the machine (CPU, cores, memory, kernel, load) and the operator's
//! commit and version.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use procfs::{CpuInfo, Current, LoadAverage, Meminfo};

use crate::report::Machine;

/// The machine as `/proc` describes it; the load at the end is filled in later.
pub fn machine() -> Result<Machine> {
    let cpu = CpuInfo::current().context("reading /proc/cpuinfo")?;
    let memory = Meminfo::current().context("reading /proc/meminfo")?;
    Ok(Machine {
        cpu_model: cpu.model_name(0).unwrap_or("unknown").trim().to_string(),
        cores: std::thread::available_parallelism().map_or(cpu.num_cores(), |n| n.get()),
        // procfs reports bytes.
        memory_gib: memory.mem_total as f64 / f64::from(1u32 << 30),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        load_at_start: load(),
        load_at_end: 0.0,
    })
}

/// The 1-minute load average (0 when unreadable).
pub fn load() -> f32 {
    LoadAverage::current().map_or(0.0, |l| l.one)
}

/// `git rev-parse HEAD` in `repo`, with `-dirty` when tracked files differ from it.
pub fn commit(repo: &Path) -> Result<String> {
    let head = git(repo, &["rev-parse", "HEAD"])?;
    let changes = git(repo, &["status", "--porcelain", "--untracked-files=no"])?;
    Ok(if changes.is_empty() {
        head
    } else {
        format!("{head}-dirty")
    })
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `<operator> version`.
pub fn operator_version(bin: &Path) -> Result<String> {
    let output = Command::new(bin)
        .arg("version")
        .output()
        .with_context(|| format!("running {} version", bin.display()))?;
    if !output.status.success() {
        bail!("{} version failed", bin.display());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
