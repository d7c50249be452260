//! VIP configuration: the address, the interface and the announcement schedule.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use crate::error::VipError;

/// An IPv4 address with a prefix length, e.g. `198.51.100.100/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length (0–32).
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = VipError;

    /// Parses `a.b.c.d/prefix`, or `a.b.c.d` meaning `/32`. IPv6 is rejected (not supported).
    fn from_str(s: &str) -> Result<Self, VipError> {
        let err = |reason: &str| VipError::InvalidCidr {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if addr.contains(':') {
            return Err(err("IPv6 VIPs are not supported (IPv4 with ARP only)"));
        }
        let address: Ipv4Addr = addr
            .parse()
            .map_err(|_| err("not an IPv4 address (a.b.c.d)"))?;
        let prefix = match prefix {
            None => 32,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| err("prefix length must be 0..=32"))?,
        };
        if address.is_unspecified()
            || address.is_loopback()
            || address.is_multicast()
            || address.is_broadcast()
        {
            return Err(err(
                "not a unicast address (unspecified, loopback, multicast or broadcast)",
            ));
        }
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Which form of gratuitous ARP to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GarpForm {
    /// Unsolicited ARP request (`arping -U`), honoured by Linux for existing neighbour entries.
    #[default]
    Request,
    /// ARP reply form (`arping -A`).
    Reply,
    /// Both forms, one after the other (for switches and hosts that honour only one).
    Both,
}

/// Check-before-claim: probe the address with ARP before adding it and refuse if any other
/// host answers (RFC 5227-style probes with sender address 0.0.0.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimCheck {
    /// Probes sent (at least 1).
    pub probes: u32,
    /// Time to wait for answers after each probe.
    pub wait: Duration,
}

impl Default for ClaimCheck {
    /// 3 probes, 100 ms apart: activation takes ~300 ms longer when the address is free.
    fn default() -> Self {
        Self {
            probes: 3,
            wait: Duration::from_millis(100),
        }
    }
}

/// Configuration of one virtual IP.
///
/// Build it with [`Vip::new`] and the `with_*` methods; [`Vip::validate`] runs on construction
/// of a [`VipResource`](crate::VipResource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// Address and prefix to add to the interface.
    pub cidr: Cidr,
    /// The interface (in the resource's network namespace) that carries the VIP.
    pub interface: String,
    /// Gratuitous ARPs sent after a claim (at least 1). Default 3.
    pub garp_count: u32,
    /// Interval between those GARPs. Default 500 ms.
    pub garp_interval: Duration,
    /// Form of the GARPs. Default [`GarpForm::Request`].
    pub garp_form: GarpForm,
    /// While held, re-check the address and send one GARP this often (re-announces the VIP after
    /// a partition heals or a neighbour cache was overwritten). `None` disables. Default 10 s.
    pub refresh_interval: Option<Duration>,
    /// Probe the address before adding it and refuse when another host answers. Default off.
    pub check_before_claim: Option<ClaimCheck>,
    /// On construction, remove the address if it is already on the interface (left behind by an
    /// earlier run that was killed). Default on.
    pub release_stale_on_start: bool,
    /// While held, run a guard process that removes the address if this process dies without
    /// releasing it (SIGKILL). Needs `/bin/sh` and `ip` (iproute2). Default on.
    pub watchdog: bool,
}

impl Vip {
    /// A VIP `cidr` (`a.b.c.d/prefix`, or `a.b.c.d` for `/32`) on `interface` with the defaults.
    pub fn new(cidr: &str, interface: &str) -> Result<Self, VipError> {
        let vip = Self {
            cidr: cidr.parse()?,
            interface: interface.to_owned(),
            garp_count: 3,
            garp_interval: Duration::from_millis(500),
            garp_form: GarpForm::default(),
            refresh_interval: Some(Duration::from_secs(10)),
            check_before_claim: None,
            release_stale_on_start: true,
            watchdog: true,
        };
        vip.validate()?;
        Ok(vip)
    }

    /// Sets the GARP burst sent after a claim.
    pub fn with_garp(mut self, count: u32, interval: Duration) -> Self {
        self.garp_count = count;
        self.garp_interval = interval;
        self
    }

    /// Sets the GARP form.
    pub fn with_garp_form(mut self, form: GarpForm) -> Self {
        self.garp_form = form;
        self
    }

    /// Sets (or with `None` disables) the periodic re-announcement while held.
    pub fn with_refresh(mut self, interval: Option<Duration>) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Enables (or with `None` disables) check-before-claim.
    pub fn with_claim_check(mut self, check: Option<ClaimCheck>) -> Self {
        self.check_before_claim = check;
        self
    }

    /// Sets whether a leftover address is removed on construction.
    pub fn with_release_stale_on_start(mut self, on: bool) -> Self {
        self.release_stale_on_start = on;
        self
    }

    /// Sets whether a watchdog process removes the address when this process dies holding it.
    pub fn with_watchdog(mut self, on: bool) -> Self {
        self.watchdog = on;
        self
    }

    /// Checks every field; nothing is changed on the system.
    pub fn validate(&self) -> Result<(), VipError> {
        let name = &self.interface;
        if name.is_empty()
            || name.len() > 15
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(VipError::InvalidConfig(format!(
                "interface name {name:?} is not a valid Linux interface name (1-15 characters, \
                 no '/', ':' or whitespace)"
            )));
        }
        if self.garp_count == 0 {
            return Err(VipError::InvalidConfig(
                "garp_count must be at least 1".into(),
            ));
        }
        if self.garp_count > 1 && self.garp_interval.is_zero() {
            return Err(VipError::InvalidConfig(
                "garp_interval must be positive when garp_count > 1".into(),
            ));
        }
        if self.refresh_interval.is_some_and(|r| r.is_zero()) {
            return Err(VipError::InvalidConfig(
                "refresh_interval must be positive (use None to disable)".into(),
            ));
        }
        if let Some(c) = self.check_before_claim
            && (c.probes == 0 || c.wait.is_zero())
        {
            return Err(VipError::InvalidConfig(
                "check_before_claim needs at least 1 probe and a positive wait".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidr_forms() {
        let c: Cidr = "198.51.100.100/24".parse().unwrap();
        assert_eq!(c.address, Ipv4Addr::new(198, 51, 100, 100));
        assert_eq!(c.prefix, 24);
        assert_eq!(c.to_string(), "198.51.100.100/24");
        assert_eq!("198.51.100.7".parse::<Cidr>().unwrap().prefix, 32);
    }

    #[test]
    fn rejects_bad_cidrs_with_the_reason() {
        for (bad, reason) in [
            ("198.51.100.300/24", "not an IPv4"),
            ("198.51.100.1/33", "prefix"),
            ("198.51.100.1/x", "prefix"),
            ("", "not an IPv4"),
            ("2001:db8::1/64", "IPv6"),
            ("0.0.0.0/0", "unicast"),
            ("127.0.0.1/8", "unicast"),
            ("224.0.0.1/32", "unicast"),
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(
                matches!(e, VipError::InvalidCidr { .. }) && e.to_string().contains(reason),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn validates_configuration() {
        let ok = Vip::new("198.51.100.100/32", "eth0").unwrap();
        assert_eq!(ok.garp_count, 3);
        assert_eq!(ok.garp_interval, Duration::from_millis(500));
        for bad in ["", "a/b", "sixteen-chars-xx", "eth 0"] {
            assert!(
                matches!(
                    Vip::new("198.51.100.100", bad),
                    Err(VipError::InvalidConfig(_))
                ),
                "{bad:?}"
            );
        }
        assert!(ok.clone().with_garp(0, Duration::ZERO).validate().is_err());
        assert!(
            ok.clone()
                .with_refresh(Some(Duration::ZERO))
                .validate()
                .is_err()
        );
        assert!(
            ok.clone()
                .with_claim_check(Some(ClaimCheck {
                    probes: 0,
                    wait: Duration::from_millis(1)
                }))
                .validate()
                .is_err()
        );
        assert!(ok.with_refresh(None).validate().is_ok());
    }
}
