//! A podman API service on a private socket and the local busybox test image, for the Docker
//! backend tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::Docker;

pub const IMAGE: &str = "localhost/cluster-test-busybox:latest";
pub const HINT: &str = "install podman and runc (apt-get install -y podman runc busybox-static) and \
    write /etc/containers/containers.conf.d/50-test.conf as .ci/run does";

/// A podman API service on a private socket, stopped (by pid) on drop, with the containers a
/// test created removed.
pub struct Podman {
    pub dir: PathBuf,
    service: Child,
    containers: Vec<String>,
}

impl Podman {
    pub fn start(tag: &str) -> Self {
        let ok = Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "podman is missing: {HINT}");
        ensure_image();
        let dir = super::scratch(tag);
        let sock = dir.join("podman.sock");
        let service = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("podman system service: {e}; {HINT}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "podman socket never came up; {HINT}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            dir,
            service,
            containers: Vec::new(),
        }
    }

    /// How many container names this test asked for.
    pub fn count(&self) -> usize {
        self.containers.len()
    }

    pub fn socket(&self) -> String {
        format!("unix://{}", self.dir.join("podman.sock").display())
    }

    /// A container name for this test, removed on drop.
    pub fn name(&mut self, what: &str) -> String {
        let name = format!("cltest-{what}-{}", std::process::id());
        self.containers.push(name.clone());
        name
    }

    pub async fn client(&self) -> Docker {
        Docker::connect_with_unix(
            self.dir.join("podman.sock").to_str().unwrap(),
            30,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Imports the busybox test image once (environment.md §6.3).
pub fn ensure_image() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("podman")
            .args(["image", "exists", IMAGE])
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            return;
        }
        let bb = super::busybox();
        let dir = super::scratch("rootfs");
        let root = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(&bb, root.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "ls", "cat", "sleep", "echo", "httpd", "wget", "env", "true",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::write(root.join("www/index.html"), "ok\n").unwrap();
        let tar = dir.join("rootfs.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar failed");
        let ok = Command::new("podman")
            .args([
                "import",
                "--change",
                "CMD [\"/bin/sh\"]",
                "--change",
                "ENV PATH=/bin",
            ])
            .arg(&tar)
            .arg(IMAGE)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "podman import failed; {HINT}");
        std::fs::remove_dir_all(dir).unwrap();
    });
}
