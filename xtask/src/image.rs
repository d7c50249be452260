//! `cargo xtask image [--binary PATH] [--tag TAG]`: the container image with podman, and its
//! end-to-end test (`cargo xtask e2e-image`, also the last step of `cargo xtask e2e`).
//!
//! No registry is needed: the build context's `rootfs/` is the binary plus the shared libraries
//! `ldd` lists for it (copied from the build host, Debian here) and a passwd/group with the
//! unprivileged user `cluster` (65532); `packaging/Containerfile` starts `FROM scratch`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::e2e::{free_port, target_dir};
use crate::{run, tools};

/// The default tag.
const TAG: &str = "localhost/cluster:latest";
/// The image user (no login, owns /var/lib/cluster).
const UID: u32 = 65532;

/// `cargo xtask image`: builds the release binary (unless `--binary`) and the image.
pub(crate) fn image(root: &Path, args: &[String]) -> Result<()> {
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let bin = match flag("--binary") {
        Some(p) => PathBuf::from(p),
        None => crate::release::build_binary(root, &[])?,
    };
    let tag = flag("--tag").unwrap_or_else(|| TAG.to_owned());
    build(root, &bin, &tag)
}

/// Prepares the context in the target directory and runs `podman build`.
pub(crate) fn build(root: &Path, bin: &Path, tag: &str) -> Result<()> {
    let ctx = target_dir(root).join("cluster-image");
    if ctx.exists() {
        std::fs::remove_dir_all(&ctx)?;
    }
    rootfs(&ctx.join("rootfs"), bin)?;
    std::fs::create_dir_all(ctx.join("state"))?;
    std::fs::copy(
        root.join("packaging/Containerfile"),
        ctx.join("Containerfile"),
    )?;
    let ctx_s = ctx.to_string_lossy();
    run(
        root,
        "podman",
        &["build", "--network", "none", "--tag", tag, &ctx_s],
        &[],
    )?;
    println!("==> image {tag}");
    Ok(())
}

/// The image's filesystem: the binary, its libraries, users, empty config and tmp directories.
fn rootfs(dir: &Path, bin: &Path) -> Result<()> {
    let put = |from: &Path, to: &Path| -> Result<()> {
        let to = dir.join(to.strip_prefix("/").unwrap_or(to));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        Ok(())
    };
    put(bin, Path::new("/usr/bin/cluster"))?;
    for lib in libraries(bin)? {
        put(&lib, &lib)?;
    }
    let etc = dir.join("etc");
    std::fs::create_dir_all(etc.join("cluster"))?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             cluster:x:{UID}:{UID}:cluster:/var/lib/cluster:/sbin/nologin\n"
        ),
    )?;
    std::fs::write(etc.join("group"), format!("root:x:0:\ncluster:x:{UID}:\n"))?;
    std::fs::write(
        etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nhosts: files dns\n",
    )?;
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// The shared libraries (and the loader) `ldd` lists for `bin`.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: "not a dynamic executable".
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `cargo xtask e2e-image`: the image with a debug binary, a nats-server on the host and three
/// containers (host network) of one platform; `cluster status` inside one of them must list all
/// three with a leader of `db`; the containers run as the unprivileged user and stop
/// gracefully (exit 0) on `podman stop`.
pub(crate) fn e2e(root: &Path) -> Result<()> {
    let nats = tools::ensure_nats_server(root)?;
    run(root, "cargo", &["build", "-p", "cluster-cli"], &[])?;
    let tag = "localhost/cluster:e2e";
    build(root, &target_dir(root).join("debug").join("cluster"), tag)?;
    let dir = std::env::temp_dir().join(format!("cluster-image-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let mut server = Command::new(&nats)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nats-server")?;
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "platform = \"image-e2e\"\nshutdown_timeout = \"10s\"\n[nats]\nservers = \
             [\"nats://127.0.0.1:{port}\"]\n[election]\nprofile = \"fast\"\n\
             [[apps]]\nname = \"db\"\nmode = \"singleton\"\n"
        ),
    )?;
    let nodes = ["n1", "n2", "n3"];
    let name = |n: &str| format!("cluster-image-e2e-{n}");
    let result = (|| -> Result<()> {
        for n in nodes {
            let mount = format!("{}:/etc/cluster/cluster.toml:ro", config.display());
            let env = format!("CLUSTER_NODE={n}");
            run(
                root,
                "podman",
                &[
                    "run",
                    "-d",
                    "--name",
                    &name(n),
                    "--network",
                    "host",
                    "-v",
                    &mount,
                    "-e",
                    &env,
                    tag,
                ],
                &[],
            )?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let out = Command::new("podman")
                .args(["exec", &name("n1"), "cluster", "--config"])
                .args(["/etc/cluster/cluster.toml", "--json", "status"])
                .output()?;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                && v["members"].as_array().is_some_and(|m| m.len() == 3)
                && v["apps"][0]["leader"].is_string()
            {
                break v;
            }
            if Instant::now() > deadline {
                bail!(
                    "cluster status inside {} did not show 3 members and a db leader within \
                     60s: {}{}",
                    name("n1"),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let members: Vec<&str> = status["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["node"].as_str())
            .collect();
        println!(
            "    status inside {}: members {members:?}, db leader {}",
            name("n1"),
            status["apps"][0]["leader"]
        );
        let _ = Command::new("podman")
            .args(["exec", &name("n1"), "cluster", "--config"])
            .args(["/etc/cluster/cluster.toml", "status"])
            .status();
        let user = Command::new("podman")
            .args(["top", &name("n1"), "huser", "comm"])
            .output()?;
        let user = String::from_utf8_lossy(&user.stdout).to_string();
        if !user
            .lines()
            .skip(1)
            .all(|l| l.trim_start().starts_with(&UID.to_string()))
        {
            bail!("the daemon runs as {UID} in the container: {user}");
        }
        println!("    processes run as uid {UID}");
        for n in nodes {
            run(root, "podman", &["stop", "-t", "20", &name(n)], &[])?;
            let code = Command::new("podman")
                .args(["inspect", "--format", "{{.State.ExitCode}}", &name(n)])
                .output()?;
            let code = String::from_utf8_lossy(&code.stdout).trim().to_owned();
            if code != "0" {
                bail!("{} exited {code} on podman stop, not 0 (graceful)", name(n));
            }
        }
        println!("    podman stop: every daemon left gracefully (exit 0)");
        Ok(())
    })();
    for n in nodes {
        let _ = Command::new("podman")
            .args(["rm", "-f", &name(n)])
            .stdout(Stdio::null())
            .status();
    }
    let _ = Command::new("podman")
        .args(["rmi", tag])
        .stdout(Stdio::null())
        .status();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f96)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f96)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f96)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
