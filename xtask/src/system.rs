//! System packages and settings the tests need, installed when missing.
//!
//! One place for what a fresh machine lacks: the README's test command (`cargo xtask test`)
//! calls [`ensure_system`] before anything else, and `.ci/run` only calls that command. Each
//! requirement names a probe (a command on `PATH`, an executable file or an installed Debian
//! package) and the Debian package that provides it. Missing packages are installed with
//! `apt-get` when this process runs as root on a Debian-like system; otherwise one line per
//! missing requirement says what to install, and the run stops before any test.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// How to tell whether a requirement is met.
enum Probe {
    /// A program on `PATH`.
    Program(&'static str),
    /// An executable at this path.
    File(&'static str),
    /// An installed Debian package (`dpkg -s`).
    Package(&'static str),
}

/// One thing the tests need, the Debian package that provides it and which tests use it.
struct Requirement {
    probe: Probe,
    package: &'static str,
    used_by: &'static str,
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        probe: Probe::Program("python3"),
        package: "python3",
        used_by: "installing nats-server from PyPI",
    },
    Requirement {
        probe: Probe::Package("python3-venv"),
        package: "python3-venv",
        used_by: "installing nats-server from PyPI (python3 -m venv)",
    },
    Requirement {
        probe: Probe::Program("sqlite3"),
        package: "sqlite3",
        used_by: "cluster-wal tests (an external SQLite writer)",
    },
    Requirement {
        probe: Probe::Program("ip"),
        package: "iproute2",
        used_by: "cluster-vip tests (network namespaces)",
    },
    Requirement {
        probe: Probe::Program("promtool"),
        package: "prometheus",
        used_by: "cluster-cli observability test (lints /metrics)",
    },
    Requirement {
        probe: Probe::Program("podman"),
        package: "podman",
        used_by: "cluster-backend Docker API tests (podman's Docker-compatible API)",
    },
    Requirement {
        probe: Probe::Program("runc"),
        package: "runc",
        used_by: "cluster-backend Docker API tests (OCI runtime for podman)",
    },
    Requirement {
        probe: Probe::Package("busybox-static"),
        package: "busybox-static",
        used_by: "cluster-backend tests (httpd, container image)",
    },
    Requirement {
        probe: Probe::Program("dbus-daemon"),
        package: "dbus",
        used_by: "cluster-backend systemd tests (a private D-Bus)",
    },
    Requirement {
        probe: Probe::File("/lib/systemd/systemd"),
        package: "systemd",
        used_by: "cluster-backend systemd tests (a systemd user manager)",
    },
];

/// podman's settings for this kind of machine: crun rejects the hybrid cgroup layout and the
/// default ulimits exceed the hard limits (docs/architecture/cluster-backend.md).
const PODMAN_CONF_DIR: &str = "/etc/containers/containers.conf.d";
const PODMAN_CONF_FILE: &str = "50-cluster-tests.conf";
const PODMAN_CONF: &str = "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";

/// Installs every missing system requirement, or fails naming each one that cannot be installed.
pub(crate) fn ensure_system() -> Result<()> {
    let missing: Vec<&Requirement> = REQUIREMENTS.iter().filter(|r| !r.is_met()).collect();
    let root = is_root();
    if !missing.is_empty() {
        if !root || !has_program("apt-get") {
            for r in &missing {
                println!(
                    "missing: {} (Debian package {}), needed by {}",
                    r.describe(),
                    r.package,
                    r.used_by
                );
            }
            bail!(
                "{} system requirement(s) missing and cannot be installed here ({}); install them \
                 (as root: apt-get install {}) and run again",
                missing.len(),
                if root { "no apt-get" } else { "not root" },
                missing
                    .iter()
                    .map(|r| r.package)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let packages: Vec<&str> = missing.iter().map(|r| r.package).collect();
        println!("==> installing system packages: {}", packages.join(" "));
        apt_install(&packages)?;
        let still: Vec<String> = REQUIREMENTS
            .iter()
            .filter(|r| !r.is_met())
            .map(Requirement::describe)
            .collect();
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.join(", "));
        }
    }
    configure_podman(root)
}

impl Requirement {
    fn is_met(&self) -> bool {
        match self.probe {
            Probe::Program(name) => has_program(name),
            Probe::File(path) => is_executable(Path::new(path)),
            Probe::Package(name) => Command::new("dpkg")
                .args(["-s", name])
                .output()
                .is_ok_and(|o| o.status.success()),
        }
    }

    fn describe(&self) -> String {
        match self.probe {
            Probe::Program(name) => format!("program `{name}`"),
            Probe::File(path) => format!("file {path}"),
            Probe::Package(name) => format!("package {name}"),
        }
    }
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("cannot run apt-get update")?;
    if !status.success() {
        bail!("apt-get update failed ({status}); is the Debian package mirror reachable?");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get install")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", packages.join(" "));
    }
    Ok(())
}

/// Writes podman's test settings when they differ (root only; otherwise says what to write).
fn configure_podman(root: bool) -> Result<()> {
    let path = Path::new(PODMAN_CONF_DIR).join(PODMAN_CONF_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|c| c == PODMAN_CONF) {
        return Ok(());
    }
    if !root {
        bail!(
            "podman needs {} with:\n{PODMAN_CONF}(write it as root and run again)",
            path.display()
        );
    }
    std::fs::create_dir_all(PODMAN_CONF_DIR)
        .with_context(|| format!("cannot create {PODMAN_CONF_DIR}"))?;
    std::fs::write(&path, PODMAN_CONF)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("==> wrote podman test settings to {}", path.display());
    Ok(())
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_on_path_and_not_a_missing_one() {
        assert!(has_program("sh"));
        assert!(!has_program("surely-no-such-program-xyz"));
    }

    #[test]
    fn every_requirement_names_a_package_and_a_user() {
        for r in REQUIREMENTS {
            assert!(
                !r.package.is_empty() && !r.used_by.is_empty(),
                "{}",
                r.describe()
            );
        }
    }
}
