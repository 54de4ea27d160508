//! A fake host for tests: simulated links (with the kernel's rules from
//! [`private_plan::plan::simulate`]), the firewall script and the FRR
//! configuration last applied, a hostname and forwarding, a log of every
//! call, and failures on demand.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use host_tools::ApplyError;

use crate::apply::{EvpnHost, Firewall, Forwarding, Frr, Links, System};
use private_plan::net::Vni;
use private_plan::observed::{Link, Observed};
use private_plan::plan::{LinkOp, simulate};

struct State {
    links: Observed,
    firewall: Option<String>,
    filters: Option<private_plan::sg::Filters>,
    frr: Option<String>,
    hostname: String,
    forwarding: Forwarding,
    calls: Vec<String>,
    /// `(tool, message)`: the next call of `tool` (`ip`, `nft`, `vtysh`,
    /// `frr-reload`) that changes or checks something fails with `message`.
    failures: VecDeque<(String, String)>,
}

/// The fake host.
pub struct FakeHost {
    state: Mutex<State>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    /// A host named `host1` with forwarding off and no link.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                links: Observed::default(),
                firewall: None,
                filters: None,
                frr: None,
                hostname: "host1".into(),
                forwarding: Forwarding {
                    ipv4: false,
                    ipv6: false,
                },
                calls: Vec::new(),
                failures: VecDeque::new(),
            }),
        }
    }

    /// A host with an underlay device `device` holding `local`, MTU `mtu`.
    pub fn with_underlay(device: &str, local: &str, mtu: u32) -> Self {
        let host = Self::new();
        host.lock().links.links.insert(
            device.to_owned(),
            Link {
                mtu,
                up: true,
                ipv4: local.parse().into_iter().collect(),
                ..Link::default()
            },
        );
        host
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn host(&self) -> EvpnHost<'_> {
        EvpnHost {
            links: self,
            firewall: self,
            frr: self,
            system: self,
        }
    }

    pub fn links(&self) -> Observed {
        self.lock().links.clone()
    }

    pub fn set_links(&self, links: Observed) {
        self.lock().links = links;
    }

    /// The `nft -f -` script last applied.
    pub fn firewall(&self) -> Option<String> {
        self.lock().firewall.clone()
    }

    /// The security group tables last applied.
    pub fn filters(&self) -> Option<private_plan::sg::Filters> {
        self.lock().filters.clone()
    }

    /// The FRR configuration last reloaded.
    pub fn frr(&self) -> Option<String> {
        self.lock().frr.clone()
    }

    pub fn set_forwarding(&self, forwarding: Forwarding) {
        self.lock().forwarding = forwarding;
    }

    /// Calls so far, forgotten.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Makes the next call of `tool` (`ip`, `nft`, `vtysh`, `frr-reload`) fail.
    pub fn fail_next(&self, tool: &str, message: &str) {
        self.lock().failures.push_back((tool.to_owned(), message.to_owned()));
    }

    fn failure(state: &mut State, tool: &str) -> Option<String> {
        let i = state.failures.iter().position(|(t, _)| t == tool)?;
        state.failures.remove(i).map(|(_, m)| m)
    }
}

impl Links for FakeHost {
    fn observe(&self) -> Result<Observed, ApplyError> {
        let mut s = self.lock();
        s.calls.push("ip -d -j addr show".into());
        Ok(s.links.clone())
    }

    fn apply(&self, ops: &[LinkOp], keep_going: bool) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut s = self.lock();
        for op in ops {
            s.calls.push(format!("ip {op}"));
        }
        if let Some(m) = Self::failure(&mut s, "ip") {
            return Err(ApplyError {
                message: m,
                failed_line: Some(1),
                nft_refused: false,
            });
        }
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = simulate(&mut s.links, std::slice::from_ref(op))
                && !keep_going
            {
                return Err(ApplyError {
                    message: format!("`ip -batch -` failed: {e} (at `ip {op}`)"),
                    failed_line: Some(i + 1),
                    nft_refused: false,
                });
            }
        }
        Ok(())
    }
}

impl Firewall for FakeHost {
    fn apply(&self, rules: &private_plan::firewall::Rules) -> Result<(), ApplyError> {
        let mut s = self.lock();
        s.calls.push("nft -f -".into());
        if let Some(m) = Self::failure(&mut s, "nft") {
            return Err(ApplyError::new(m));
        }
        s.firewall = Some(rules.script());
        Ok(())
    }

    fn filters(
        &self,
        filters: &private_plan::sg::Filters,
        _before: Option<&private_plan::sg::Filters>,
    ) -> Result<(), ApplyError> {
        let mut s = self.lock();
        s.calls.push("nft -f - (security groups)".into());
        if let Some(m) = Self::failure(&mut s, "nft") {
            return Err(ApplyError::new(m));
        }
        filters.check().map_err(ApplyError::new)?;
        s.filters = Some(filters.clone());
        Ok(())
    }
}

impl Frr for FakeHost {
    fn check(&self, path: &Path) -> Result<(), ApplyError> {
        let mut s = self.lock();
        s.calls.push("vtysh -C -f".into());
        if let Some(m) = Self::failure(&mut s, "vtysh") {
            return Err(ApplyError::new(m));
        }
        std::fs::read_to_string(path)
            .map(drop)
            .map_err(|e| ApplyError::new(format!("cannot read {}: {e}", path.display())))
    }

    fn reload(&self, path: &Path) -> Result<(), ApplyError> {
        let mut s = self.lock();
        s.calls.push("frr-reload.py --reload".into());
        if let Some(m) = Self::failure(&mut s, "frr-reload") {
            return Err(ApplyError::new(m));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApplyError::new(format!("cannot read {}: {e}", path.display())))?;
        s.frr = Some(text);
        Ok(())
    }

    /// As FRR does: the running configuration's `vni` lines change, sorted
    /// as `show running-config` (and the rendered file) lists them.
    fn vnis(&self, asn: u32, add: &BTreeSet<Vni>, remove: &BTreeSet<Vni>) -> Result<(), ApplyError> {
        let mut s = self.lock();
        s.calls.push(format!(
            "vtysh router bgp {asn}: vni +{:?} -{:?}",
            add.iter().map(|v| u32::from(*v)).collect::<Vec<_>>(),
            remove.iter().map(|v| u32::from(*v)).collect::<Vec<_>>()
        ));
        if let Some(m) = Self::failure(&mut s, "vtysh") {
            return Err(ApplyError::new(m));
        }
        let text = s
            .frr
            .clone()
            .ok_or_else(|| ApplyError::new("% BGP instance not found (no configuration applied)"))?;
        if !text.contains(&format!("router bgp {asn}\n")) {
            return Err(ApplyError::new(format!(
                "% BGP instance name and AS number mismatch ({asn})"
            )));
        }
        let mut vnis: BTreeSet<u32> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  vni ").and_then(|n| n.parse().ok()))
            .collect();
        vnis.extend(add.iter().map(|v| u32::from(*v)));
        for r in remove.difference(add) {
            vnis.remove(&u32::from(*r));
        }
        let mut out = String::new();
        let mut in_vnis = false;
        for line in text.lines() {
            if line.starts_with("  vni ") || line == "  exit-vni" {
                continue;
            }
            if in_vnis && line == " exit-address-family" {
                for v in &vnis {
                    out.push_str(&format!("  vni {v}\n  exit-vni\n"));
                }
                in_vnis = false;
            }
            in_vnis |= line == "  advertise-all-vni";
            out.push_str(line);
            out.push('\n');
        }
        s.frr = Some(out);
        Ok(())
    }
}

impl System for FakeHost {
    fn hostname(&self) -> Result<String, ApplyError> {
        Ok(self.lock().hostname.clone())
    }

    fn forwarding(&self) -> Result<Forwarding, ApplyError> {
        Ok(self.lock().forwarding)
    }
}
