//! `docker run`-style options given as a Docker backend's `extra_args` (the spec's
//! `DockerConfig.ExtraArgs`), parsed into the fields of the container configuration.
//!
//! Supported: `--env`/`-e KEY=VALUE`, `--volume`/`-v host:container[:ro]`,
//! `--publish`/`-p [ip:]host:container[/proto]`, `--cap-add CAP`, `--network NAME`,
//! `--user`/`-u USER[:GROUP]`, `--memory`/`-m SIZE` (bytes or with a `b`/`k`/`m`/`g` suffix)
//! and `--cpus N` (fractional). A long option takes its value as the next argument or after
//! `=`; a short one as the next argument. Anything else (another option, a positional
//! argument, a missing or malformed value) is an [`Error::InvalidArgument`] naming it.

use cluster_core::{Error, Result};

/// The options of a Docker backend's `extra_args`, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraArgs {
    /// `--env` values (`KEY=VALUE`).
    pub env: Vec<String>,
    /// `--volume` values (bind mounts).
    pub volumes: Vec<String>,
    /// `--publish` values (published ports).
    pub ports: Vec<String>,
    /// `--cap-add` values (capabilities).
    pub cap_add: Vec<String>,
    /// `--network` (the last one wins, as with `docker run`).
    pub network: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--memory` in bytes.
    pub memory_bytes: Option<i64>,
    /// `--cpus` in units of 10⁻⁹ CPUs.
    pub nano_cpus: Option<i64>,
}

/// The options accepted, for error messages.
const SUPPORTED: &str = "--env/-e, --volume/-v, --publish/-p, --cap-add, --network, \
                         --user/-u, --memory/-m, --cpus";

impl ExtraArgs {
    /// Parses `args` (see [`ExtraArgs`]).
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut out = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if arg.starts_with("--") => (name, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let Some(long) = canonical(name) else {
                return Err(invalid(format!(
                    "unsupported option {arg:?} (supported: {SUPPORTED}; the command goes in cmd)"
                )));
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| invalid(format!("{name} needs a value")))?,
            };
            if value.is_empty() {
                return Err(invalid(format!("{name} needs a value")));
            }
            match long {
                "--env" => {
                    if !value.contains('=') || value.starts_with('=') {
                        return Err(invalid(format!("{name} {value:?}: expected KEY=VALUE")));
                    }
                    out.env.push(value);
                }
                "--volume" => out.volumes.push(value),
                "--publish" => out.ports.push(value),
                "--cap-add" => out.cap_add.push(value),
                "--network" => out.network = Some(value),
                "--user" => out.user = Some(value),
                "--memory" => out.memory_bytes = Some(memory(name, &value)?),
                _ => out.nano_cpus = Some(cpus(name, &value)?),
            }
        }
        Ok(out)
    }
}

/// The long name of a supported option (`-e` → `--env`), if it is one.
fn canonical(name: &str) -> Option<&'static str> {
    Some(match name {
        "--env" | "-e" => "--env",
        "--volume" | "-v" => "--volume",
        "--publish" | "-p" => "--publish",
        "--cap-add" => "--cap-add",
        "--network" | "--net" => "--network",
        "--user" | "-u" => "--user",
        "--memory" | "-m" => "--memory",
        "--cpus" => "--cpus",
        _ => return None,
    })
}

fn invalid(what: String) -> Error {
    Error::InvalidArgument(format!("docker backend extra_args: {what}"))
}

/// `512m`, `1g`, `1048576`, `64k`, `100b` (case-insensitive) in bytes.
fn memory(name: &str, value: &str) -> Result<i64> {
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let factor: i64 = match unit {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => {
            return Err(invalid(format!(
                "{name} {value:?}: expected bytes or a b/k/m/g size"
            )));
        }
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("{name} {value:?}: expected a positive size")))
}

/// `1.5` CPUs in nano-CPUs.
fn cpus(name: &str, value: &str) -> Result<i64> {
    let n: f64 = value
        .parse()
        .map_err(|_| invalid(format!("{name} {value:?}: expected a number of CPUs")))?;
    let nano = n * 1e9;
    if !(nano >= 1.0 && nano < i64::MAX as f64) {
        return Err(invalid(format!(
            "{name} {value:?}: expected a positive number of CPUs"
        )));
    }
    // Within range (checked above): the cast cannot wrap.
    Ok(nano.round() as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_supported_option_in_long_short_and_inline_forms() {
        let parsed = ExtraArgs::parse(&args(&[
            "--env",
            "A=1",
            "-e",
            "B=2=3",
            "--env=C=",
            "-v",
            "/h:/c:ro",
            "--volume=/x:/y",
            "-p",
            "127.0.0.1:8080:80",
            "--publish",
            "53:53/udp",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add=SYS_TIME",
            "--network",
            "bridge",
            "--net=host",
            "-u",
            "1000:1000",
            "--memory",
            "512m",
            "--cpus=1.5",
        ]))
        .unwrap();
        assert_eq!(parsed.env, args(&["A=1", "B=2=3", "C="]));
        assert_eq!(parsed.volumes, args(&["/h:/c:ro", "/x:/y"]));
        assert_eq!(parsed.ports, args(&["127.0.0.1:8080:80", "53:53/udp"]));
        assert_eq!(parsed.cap_add, args(&["NET_ADMIN", "SYS_TIME"]));
        assert_eq!(
            parsed.network.as_deref(),
            Some("host"),
            "the last --network wins"
        );
        assert_eq!(parsed.user.as_deref(), Some("1000:1000"));
        assert_eq!(parsed.memory_bytes, Some(512 * 1024 * 1024));
        assert_eq!(parsed.nano_cpus, Some(1_500_000_000));
        assert_eq!(ExtraArgs::parse(&[]).unwrap(), ExtraArgs::default());
    }

    #[test]
    fn sizes_and_cpus() {
        for (v, bytes) in [("100", 100), ("100b", 100), ("64K", 65536), ("2g", 2 << 30)] {
            assert_eq!(memory("-m", v).unwrap(), bytes, "{v}");
        }
        for bad in [
            "",
            "0",
            "-1",
            "1x",
            "m",
            "1.5g",
            "99999999999999999999g",
            "9223372036854775807g",
        ] {
            assert!(memory("-m", bad).is_err(), "{bad}");
        }
        assert_eq!(cpus("--cpus", "0.25").unwrap(), 250_000_000);
        assert_eq!(cpus("--cpus", "2").unwrap(), 2_000_000_000);
        for bad in ["0", "-1", "nan", "inf", "1e40", "x"] {
            assert!(cpus("--cpus", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_offending_argument() {
        for (bad, needle) in [
            (&["--privileged"][..], "--privileged"),
            (&["--rm"][..], "--rm"),
            (&["sh", "-c", "x"][..], "\"sh\""),
            (&["-e"][..], "-e needs a value"),
            (&["--env="][..], "--env needs a value"),
            (&["--env", "NOEQUALS"][..], "KEY=VALUE"),
            (&["--memory", "lots"][..], "--memory"),
            (&["-d"][..], "\"-d\""),
        ] {
            let err = ExtraArgs::parse(&args(bad)).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
            assert!(err.contains("extra_args"), "{err}");
        }
    }
}
