//! A real systemd user manager for tests, in private mount and PID namespaces
//! (environment.md §7.2): the "booted with systemd" marker exists only inside the mount
//! namespace, and killing the namespace's first process takes everything in it down.
//! Units go to [`UserManager::unit_dir`]; the manager is reached over its own D-Bus
//! ([`UserManager::connect`]). Needs root, util-linux (`unshare`), dbus and systemd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to install when the manager cannot start.
pub const HINT: &str = "needs root, util-linux (unshare), dbus and systemd: \
    apt-get install -y systemd dbus util-linux";

const SCRIPT: &str = r#"set -e
T=$1
mount --make-rprivate /
mkdir -p /run/systemd
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system
export XDG_RUNTIME_DIR=$T/xdg XDG_CONFIG_HOME=$T/cfg
mkdir -p -m 700 $XDG_RUNTIME_DIR
dbus-daemon --session --address=unix:path=$XDG_RUNTIME_DIR/bus --nofork --nopidfile --syslog-only &
export DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus
/lib/systemd/systemd --user &
wait
"#;

/// A systemd user manager in its own namespaces, killed (with everything it runs) on drop.
pub struct UserManager {
    dir: PathBuf,
    unshare: Child,
}

impl UserManager {
    /// Starts a manager in a fresh temporary directory named after `tag`, and waits until it
    /// reports `running` (panics with [`HINT`] after 30 s).
    pub async fn start(tag: &str) -> Self {
        Self::start_in(&std::env::temp_dir(), tag).await
    }

    /// [`UserManager::start`] with the scratch directory under `parent` (services run with
    /// `PrivateTmp=yes` cannot see a directory under `/tmp` or `/var/tmp`).
    pub async fn start_in(parent: &Path, tag: &str) -> Self {
        for bin in [
            "/usr/bin/unshare",
            "/usr/bin/dbus-daemon",
            "/lib/systemd/systemd",
        ] {
            assert!(Path::new(bin).exists(), "{bin} is missing: {HINT}");
        }
        let dir = parent.join(format!(
            "cluster-sd-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("cfg/systemd/user")).unwrap();
        std::fs::write(dir.join("run.sh"), SCRIPT).unwrap();
        let unshare = Command::new("unshare")
            .args(["-m", "-p", "-f", "--kill-child", "--mount-proc", "bash"])
            .arg(dir.join("run.sh"))
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("unshare: {e}; {HINT}"));
        let manager = Self { dir, unshare };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(conn) = manager.connect().await
                && let Ok(reply) = conn
                    .call_method(
                        Some("org.freedesktop.systemd1"),
                        "/org/freedesktop/systemd1",
                        Some("org.freedesktop.DBus.Properties"),
                        "Get",
                        &("org.freedesktop.systemd1.Manager", "SystemState"),
                    )
                    .await
                && let Ok(v) = reply.body().deserialize::<zbus::OwnedVariant>()
                && format!("{:?}", &*v).contains("running")
            {
                return manager;
            }
            assert!(
                Instant::now() < deadline,
                "the systemd user manager did not reach `running`; {HINT}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The scratch directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the manager reads unit files (and `<unit>.d/` drop-ins) from.
    pub fn unit_dir(&self) -> PathBuf {
        self.dir.join("cfg/systemd/user")
    }

    /// The D-Bus address of the manager's bus.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.dir.join("xdg/bus").display())
    }

    /// A connection to the manager's bus.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        zbus::connection::Builder::address(self.address().as_str())
            .build()
            .await
    }

    /// Calls a method of the manager object (`org.freedesktop.systemd1.Manager`).
    pub async fn manager_call<B>(&self, method: &str, body: &B) -> zbus::Result<zbus::Message>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        self.connect()
            .await?
            .call_method(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                method,
                body,
            )
            .await
    }

    /// Reloads the unit files.
    pub async fn reload(&self) {
        self.manager_call("Reload", &()).await.unwrap();
    }

    /// Writes a unit file and reloads the manager.
    pub async fn unit(&self, name: &str, body: &str) {
        std::fs::write(self.unit_dir().join(name), body).unwrap();
        self.reload().await;
    }

    /// Sends `signal` to the main process of `unit`.
    pub async fn kill_unit(&self, name: &str, signal: i32) {
        self.manager_call("KillUnit", &(name, "main", signal))
            .await
            .unwrap();
    }

    /// A property of `unit` (`org.freedesktop.systemd1.Unit` or `.Service`); `None` when it
    /// cannot be read.
    pub async fn property(
        &self,
        unit: &str,
        interface: &str,
        name: &str,
    ) -> Option<zbus::OwnedVariant> {
        let conn = self.connect().await.ok()?;
        let reply = self.manager_call("LoadUnit", &(unit,)).await.ok()?;
        let path: zbus::OwnedObjectPath = reply.body().deserialize().ok()?;
        let reply = conn
            .call_method(
                Some("org.freedesktop.systemd1"),
                path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(interface, name),
            )
            .await
            .ok()?;
        reply.body().deserialize().ok()
    }

    /// A string property of `unit` (`ActiveState`, `SubState`, `StatusText`, …).
    pub async fn string_property(&self, unit: &str, interface: &str, name: &str) -> Option<String> {
        variant_string(&*self.property(unit, interface, name).await?)
    }

    /// A `u32` property of `unit` (`MainPID`, `NRestarts`, …).
    pub async fn u32_property(&self, unit: &str, interface: &str, name: &str) -> Option<u32> {
        variant_u32(&*self.property(unit, interface, name).await?)
    }
}

fn variant_string(v: &zbus::Variant<'_>) -> Option<String> {
    match v {
        zbus::Variant::Str(s) => Some(s.to_string()),
        zbus::Variant::Variant(inner) => variant_string(inner),
        _ => None,
    }
}

fn variant_u32(v: &zbus::Variant<'_>) -> Option<u32> {
    match v {
        zbus::Variant::U32(n) => Some(*n),
        zbus::Variant::Variant(inner) => variant_u32(inner),
        _ => None,
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        // SIGKILL to unshare: --kill-child kills the namespace's init, and with it every
        // process of the PID namespace (dbus-daemon, systemd, the units).
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
