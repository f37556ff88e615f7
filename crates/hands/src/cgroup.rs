//! Resource limits on a sandbox as a whole — total memory, process count, CPU share — through
//! cgroups where the host lets agentd use them: v2 when the unified hierarchy has the
//! controllers, else v1. Per-process rlimits (set by the helper) apply either way.
//!
//! Every sandbox's group sits in one parent group, `agentd`, capped by `Totals`: however many
//! sandboxes run, together they leave the host memory and process ids of its own. The parent
//! is shared by every agentd on the host; the last to start sets its caps.
//!
//! A sandbox joins its group before bwrap starts: bwrap is exec'd by a shell that waits for a
//! line on stdin, and agentd writes that line only after moving the shell into the group, so no
//! process of the sandbox ever runs outside it.

use std::path::{Path, PathBuf};

use crate::Limits;

const V2_ROOT: &str = "/sys/fs/cgroup";
const V1_ROOT: &str = "/sys/fs/cgroup";
/// CPU period for quotas, microseconds.
const PERIOD_US: u64 = 100_000;

/// What all sandboxes together may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub memory_bytes: u64,
    pub processes: u64,
}

impl Totals {
    /// Three quarters of this machine's memory and half the tasks its kernel allows: the host
    /// keeps room for agentd itself and an operator's shell.
    pub fn for_this_machine() -> Totals {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(4 << 20);
        let sysctl = |name: &str| -> u64 {
            std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(32_768)
        };
        Totals {
            memory_bytes: mem_kib * 1024 / 4 * 3,
            processes: sysctl("threads-max").min(sysctl("pid_max")) / 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The unified hierarchy, under `<base>`.
    V2 { base: PathBuf },
    /// Legacy hierarchies: one base per controller (memory, pids, cpu).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
    },
    /// Not usable here; the reason, for the operator.
    Unavailable(String),
}

impl Cgroups {
    /// What this host offers to this process.
    pub fn detect() -> Cgroups {
        if !nix::unistd::geteuid().is_root() {
            return Cgroups::Unavailable("agentd does not run as root; rlimits only".into());
        }
        let v2 = Path::new(V2_ROOT);
        let controllers =
            std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if ["memory", "pids", "cpu"]
            .iter()
            .all(|c| controllers.split_whitespace().any(|x| x == *c))
        {
            let base = v2.join("agentd");
            let ok = std::fs::create_dir_all(&base).is_ok()
                && std::fs::write(v2.join("cgroup.subtree_control"), "+memory +pids +cpu").is_ok()
                && std::fs::write(base.join("cgroup.subtree_control"), "+memory +pids +cpu")
                    .is_ok();
            if ok {
                return Cgroups::V2 { base };
            }
        }
        let v1 = |c: &str| {
            let base = Path::new(V1_ROOT).join(c).join("agentd");
            std::fs::create_dir_all(&base).ok().map(|()| base)
        };
        match (v1("memory"), v1("pids"), v1("cpu")) {
            (Some(memory), Some(pids), Some(cpu)) => Cgroups::V1 { memory, pids, cpu },
            _ => Cgroups::Unavailable("no writable cgroup v2 controllers or v1 hierarchies".into()),
        }
    }

    /// Cap what all sandboxes together may use; nothing to do where cgroups are unavailable.
    pub fn limit_total(&self, t: &Totals) -> std::io::Result<()> {
        match self {
            Cgroups::Unavailable(_) => Ok(()),
            Cgroups::V2 { base } => {
                std::fs::write(base.join("memory.max"), t.memory_bytes.to_string())?;
                std::fs::write(base.join("pids.max"), t.processes.to_string())
            }
            Cgroups::V1 { memory, pids, .. } => {
                std::fs::write(
                    memory.join("memory.limit_in_bytes"),
                    t.memory_bytes.to_string(),
                )?;
                std::fs::write(pids.join("pids.max"), t.processes.to_string())
            }
        }
    }

    /// The name of a new sandbox's group: it carries this process's pid, so stale groups can
    /// be told from the live ones of other agentd processes.
    pub fn group_name() -> String {
        let n: u32 = rand::random();
        format!("sbx-{}-{n:08x}", std::process::id())
    }

    /// Remove the empty sandbox groups left behind by agentd processes that are gone.
    pub fn remove_stale(&self) {
        let bases: Vec<&PathBuf> = match self {
            Cgroups::V2 { base } => vec![base],
            Cgroups::V1 { memory, pids, cpu } => vec![memory, pids, cpu],
            Cgroups::Unavailable(_) => vec![],
        };
        for base in bases {
            for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let owner_gone = name
                    .strip_prefix("sbx-")
                    .and_then(|r| r.split('-').next())
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                let empty = std::fs::read_to_string(p.join("cgroup.procs"))
                    .is_ok_and(|s| s.trim().is_empty());
                if owner_gone && empty {
                    let _ = std::fs::remove_dir(&p);
                }
            }
        }
    }

    /// A new group for one sandbox with `limits` applied, or None when unavailable.
    pub fn create(&self, name: &str, limits: &Limits) -> std::io::Result<Option<Group>> {
        let cpu_quota = limits.cpu_percent.max(1) * PERIOD_US / 100;
        let dirs = match self {
            Cgroups::Unavailable(_) => return Ok(None),
            Cgroups::V2 { base } => {
                let d = base.join(name);
                std::fs::create_dir_all(&d)?;
                std::fs::write(d.join("memory.max"), limits.memory_bytes.to_string())?;
                let _ = std::fs::write(d.join("memory.swap.max"), "0");
                std::fs::write(d.join("pids.max"), limits.processes.to_string())?;
                std::fs::write(d.join("cpu.max"), format!("{cpu_quota} {PERIOD_US}"))?;
                vec![d]
            }
            Cgroups::V1 { memory, pids, cpu } => {
                let (m, p, c) = (memory.join(name), pids.join(name), cpu.join(name));
                for d in [&m, &p, &c] {
                    std::fs::create_dir_all(d)?;
                }
                std::fs::write(
                    m.join("memory.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                )?;
                std::fs::write(p.join("pids.max"), limits.processes.to_string())?;
                std::fs::write(c.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
                std::fs::write(c.join("cpu.cfs_quota_us"), cpu_quota.to_string())?;
                vec![m, p, c]
            }
        };
        Ok(Some(Group { dirs }))
    }
}

/// One sandbox's cgroup (one directory per hierarchy).
#[derive(Debug)]
pub struct Group {
    dirs: Vec<PathBuf>,
}

impl Group {
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// One attempt, for when no runtime is left to retry on.
    pub fn remove_now(self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Remove the group once its processes are gone; they die with the sandbox, but not
    /// always before this runs, so retry for a while.
    pub async fn remove(self) {
        for _ in 0..100 {
            self.dirs.iter().for_each(|d| {
                let _ = std::fs::remove_dir(d);
            });
            if self.dirs.iter().all(|d| !d.exists()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!(dirs = ?self.dirs, "cannot remove a sandbox's cgroup");
    }
}
