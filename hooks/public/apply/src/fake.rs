//! A fake host for tests: one simulated kernel (links, routes, proxy
//! entries, sysctls, our nft table) behind all three traits, with the
//! kernel's rules (`public_plan::observed::simulate_*`), a log of every call,
//! and failures on demand.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use public_plan::observed::{Link, Observed, simulate_ip, simulate_nft};
use public_plan::{IpOp, NftBatch, Query, SysctlKey};

use crate::ip::{Ip, IpState};
use crate::nft::Nft;
use crate::sysctl::Sysctl;
use host_tools::run::ApplyError;
use public_plan::guard::GuardState;
use public_plan::observed::NatState;

#[derive(Default)]
struct State {
    kernel: Observed,
    calls: Vec<String>,
    /// `(tool, message)`: the next call of `tool` ("nft", "ip", "sysctl")
    /// that changes something fails with `message`.
    failures: VecDeque<(String, String)>,
    processes: usize,
}

/// The fake host.
#[derive(Default)]
pub struct FakeHost {
    state: Mutex<State>,
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The simulated kernel state.
    pub fn kernel(&self) -> Observed {
        self.lock().kernel.clone()
    }

    pub fn set_kernel(&self, kernel: Observed) {
        self.lock().kernel = kernel;
    }

    /// Every call so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Calls so far, forgotten.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().calls)
    }

    /// How many `nft` listings and transactions (on a real host a
    /// transaction is an nf_tables netlink batch, or one `nft -f -`; links,
    /// routes and neighbour entries are rtnetlink messages).
    pub fn processes(&self) -> usize {
        self.lock().processes
    }

    /// Makes the next changing call of `tool` fail.
    pub fn fail_next(&self, tool: &str, message: &str) {
        self.lock().failures.push_back((tool.to_owned(), message.to_owned()));
    }

    fn failure(state: &mut State, tool: &str) -> Option<String> {
        let i = state.failures.iter().position(|(t, _)| t == tool)?;
        state.failures.remove(i).map(|(_, m)| m)
    }

    /// A VM's tap on a bridge (what libvirt does after `pre`).
    pub fn plug(&self, tap: &str, bridge: &str) {
        self.lock().kernel.links.insert(
            tap.to_owned(),
            Link {
                kind: Some("tun".into()),
                up: true,
                master: Some(bridge.to_owned()),
            },
        );
    }

    pub fn unplug(&self, tap: &str) {
        self.lock().kernel.links.remove(tap);
    }

    /// A reboot: links, routes, proxy entries, sysctls and nft are gone.
    pub fn reboot(&self) {
        self.lock().kernel = Observed::default();
    }
}

impl Nft for FakeHost {
    fn observe(&self) -> Result<NatState, ApplyError> {
        let mut s = self.lock();
        s.processes += 1;
        s.calls.push("nft -j list table ip one_scaleway".into());
        Ok(s.kernel.nat.clone())
    }

    fn observe_guard(&self) -> Result<GuardState, ApplyError> {
        let mut s = self.lock();
        s.processes += 1;
        s.calls.push("nft -j list table bridge one_scaleway_guard".into());
        Ok(s.kernel.guard.clone())
    }

    fn observe_filter(&self) -> Result<public_plan::filter::FilterState, ApplyError> {
        let mut s = self.lock();
        s.processes += 1;
        s.calls.push("nft -j list table inet one_scaleway_sg".into());
        Ok(s.kernel.filter.clone())
    }

    fn apply(&self, batch: &NftBatch) -> Result<(), ApplyError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut s = self.lock();
        s.processes += 1;
        s.calls.push(format!(
            "nft -f - <<< {}",
            batch.render().trim_end().replace('\n', "; ")
        ));
        if let Some(m) = Self::failure(&mut s, "nft") {
            return Err(ApplyError::new(format!("`nft -f -` failed (exit status: 1): {m}")));
        }
        let (mut nat, mut guard, mut filter) = (s.kernel.nat.clone(), s.kernel.guard.clone(), s.kernel.filter.clone());
        simulate_nft(&mut nat, &mut guard, &mut filter, batch)
            .map_err(|e| ApplyError::new(format!("`nft -f -` failed (exit status: 1): {e}")))?;
        s.kernel.nat = nat;
        s.kernel.guard = guard;
        s.kernel.filter = filter;
        Ok(())
    }
}

impl Ip for FakeHost {
    fn observe(&self, query: &Query) -> Result<IpState, ApplyError> {
        let mut s = self.lock();
        s.calls.push("netlink read".into());
        Ok(IpState {
            links: s.kernel.links.clone(),
            routes: s
                .kernel
                .routes
                .iter()
                .filter(|r| query.all || query.routes.contains(&(r.dst, r.len)))
                .cloned()
                .collect(),
            proxies: s
                .kernel
                .proxies
                .iter()
                .filter(|(a, d)| query.all || query.proxies.iter().any(|(qa, qd)| qa == a && qd.as_str() == d))
                .cloned()
                .collect(),
            neighbours: s
                .kernel
                .neighbours
                .iter()
                .filter(|((a, d), _)| query.all || query.neighbours.iter().any(|(qa, qd)| qa == a && qd.as_str() == d))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            addresses: s.kernel.addresses.clone(),
        })
    }

    fn apply(&self, ops: &[IpOp], keep_going: bool) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut s = self.lock();
        let lines: Vec<String> = ops.iter().map(ToString::to_string).collect();
        let force = if keep_going { " (keep going)" } else { "" };
        s.calls.push(format!("netlink change{force}: {}", lines.join("; ")));
        let injected = Self::failure(&mut s, "ip");
        // An injected failure hits the last line.
        crate::ip::in_order(ops, keep_going, |i, op| match &injected {
            Some(m) if i + 1 == ops.len() => Err(m.clone()),
            _ => simulate_ip(&mut s.kernel, op),
        })
    }
}

impl Sysctl for FakeHost {
    fn read(&self, key: &SysctlKey) -> Result<Option<String>, ApplyError> {
        let s = self.lock();
        Ok(s.kernel
            .sysctls
            .get(key)
            .cloned()
            .or_else(|| default_value(&s.kernel, key)))
    }

    fn write(&self, key: &SysctlKey, value: &str) -> Result<(), ApplyError> {
        let mut s = self.lock();
        s.calls.push(format!("sysctl {key} = {value}"));
        if let Some(m) = Self::failure(&mut s, "sysctl") {
            return Err(ApplyError::new(format!("cannot set sysctl {key} = {value}: {m}")));
        }
        match default_value(&s.kernel, key) {
            None if !s.kernel.sysctls.contains_key(key) => {
                return Err(ApplyError::new(format!("sysctl {key} does not exist")));
            }
            // Kept only when it differs from a fresh value, so states compare equal.
            Some(d) if d == value => {
                s.kernel.sysctls.remove(key);
            }
            _ => {
                s.kernel.sysctls.insert(key.clone(), value.to_owned());
            }
        }
        Ok(())
    }
}

/// A fresh namespace's value of a key that exists (its device exists).
fn default_value(kernel: &Observed, key: &SysctlKey) -> Option<String> {
    let parts: Vec<&str> = key.path().split('/').collect();
    match parts.as_slice() {
        ["net", "ipv4", "ip_forward"] | ["net", "ipv6", "conf", "all", "forwarding"] => Some("0".into()),
        ["net", _, _, dev, leaf] if kernel.links.contains_key(*dev) => Some(
            match *leaf {
                "proxy_delay" => "80",
                _ => "0",
            }
            .into(),
        ),
        _ => None,
    }
}
