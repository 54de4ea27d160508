//! The emulated account: every resource, the clock, the scheduled
//! transitions, the fault rules and the call log, behind one mutex.
//!
//! Time model: the emulator clock counts seconds from the start. Each
//! time-driven change is an [`Event`] scheduled at `now + nominal_delay ×
//! speed`. Before any request is answered (and before the control API reads
//! the state), [`World::settle`] applies every event that is due, in time
//! order; so what a client observes is a pure function of the clock.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use crate::baremetal::{Catalogue, Server};
use crate::bmpn::Spn;
use crate::faults::{Call, Rule};
use crate::fip::{Fip, MacOp};
use crate::iam::SshKey;
use crate::ipam::IpamIp;
use crate::util::{Rng, rfc3339};
use crate::vpc::{Pn, Vpc};
use crate::vpcgw::{Gateway, Gn, GwIp};

/// Zones of the flexible IP, Elastic Metal v1 and v3 APIs.
pub const EM_ZONES: [&str; 6] = ["fr-par-1", "fr-par-2", "nl-ams-1", "nl-ams-2", "pl-waw-2", "pl-waw-3"];
/// Zones of the Public Gateway v2 API.
pub const GW_ZONES: [&str; 9] = [
    "fr-par-1", "fr-par-2", "it-mil-1", "nl-ams-1", "nl-ams-2", "nl-ams-3", "pl-waw-1", "pl-waw-2", "pl-waw-3",
];
/// Regions of VPC v2 and IPAM v1.
pub const REGIONS: [&str; 4] = ["fr-par", "nl-ams", "pl-waw", "it-mil"];

/// `fr-par-2` → `fr-par`.
pub fn region_of(zone: &str) -> String {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r).to_string()
}

/// The emulator clock: real time (scaled by nothing) plus manual advances,
/// or frozen (manual mode) where only advances move it.
#[derive(Debug, Clone)]
pub struct Clock {
    manual: bool,
    base: Instant,
    offset: f64,
}

impl Clock {
    pub fn new(manual: bool) -> Self {
        Clock {
            manual,
            base: Instant::now(),
            offset: 0.0,
        }
    }

    pub fn now(&self) -> f64 {
        if self.manual {
            self.offset
        } else {
            self.offset + self.base.elapsed().as_secs_f64()
        }
    }

    pub fn is_manual(&self) -> bool {
        self.manual
    }

    pub fn advance(&mut self, seconds: f64) {
        if seconds > 0.0 {
            self.offset += seconds;
        }
    }

    pub fn set_manual(&mut self, manual: bool) {
        if manual == self.manual {
            return;
        }
        self.offset = self.now();
        self.base = Instant::now();
        self.manual = manual;
    }
}

/// How a fault rule bends the transitions a request schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The last step never happens: the resource stays in its transient state.
    Stuck,
    /// The last step ends in `error` (`failed` for a gateway).
    Error,
    /// The last step ends in `locked`.
    Locked,
}

/// Per-request context.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub now: f64,
    pub transition: Option<Transition>,
    /// The request schedules an OS installation (stuck/error then apply to it).
    pub has_install: bool,
    pub recycle_fip: bool,
    pub out_of_stock_accept: bool,
    pub total_count_delta: i64,
}

impl Ctx {
    pub fn new(now: f64) -> Self {
        Ctx { now, ..Ctx::default() }
    }

    fn fault_for_lane(&self, lane: &str) -> Option<Transition> {
        let t = self.transition?;
        let target = match t {
            Transition::Locked => "status",
            Transition::Stuck | Transition::Error => {
                if self.has_install {
                    "install"
                } else {
                    "status"
                }
            }
        };
        (lane == target).then_some(t)
    }
}

/// A scheduled change.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: f64,
    pub seq: u64,
    /// The resource it changes.
    pub id: String,
    /// Independent chains of one resource (`status`, `install`, `option:<id>`).
    pub lane: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// FIP status, and optionally its server (`Some(None)` clears it) and MAC.
    FipSet {
        status: String,
        server: Option<Option<String>>,
        mac: MacOp,
    },
    FipRemove,
    ServerStatus(String),
    InstallStatus(String),
    ServerRemove,
    OptionStatus {
        option_id: String,
        status: String,
    },
    OptionRemove {
        option_id: String,
    },
    SpnStatus(String),
    SpnRemove,
    GwStatus(String),
    GwRemove,
    GnStatus(String),
    GnRemove,
}

impl Action {
    /// The same step, ending in `status` (`error`/`locked`) instead.
    fn ending_in(&self, status: &str) -> Action {
        let s = status.to_string();
        match self {
            Action::FipSet { .. } | Action::FipRemove => Action::FipSet {
                status: s,
                server: None,
                mac: MacOp::Keep,
            },
            Action::ServerStatus(_) | Action::ServerRemove => Action::ServerStatus(s),
            Action::InstallStatus(_) => Action::InstallStatus(s),
            Action::OptionStatus { option_id, .. } | Action::OptionRemove { option_id } => Action::OptionStatus {
                option_id: option_id.clone(),
                status: format!("option_status_{s}"),
            },
            Action::SpnStatus(_) | Action::SpnRemove => Action::SpnStatus(s),
            Action::GwStatus(_) | Action::GwRemove => {
                Action::GwStatus(if status == "error" { "failed".into() } else { s })
            }
            Action::GnStatus(_) | Action::GnRemove => Action::GnStatus(s),
        }
    }
}

/// Everything the emulator knows.
pub struct World {
    pub clock: Clock,
    pub speed: f64,
    /// Wall-clock seconds (Unix) at clock 0: timestamps are `start_wall + clock`.
    pub start_wall: f64,
    pub rng: Rng,
    seq: u64,
    /// Accepted secret keys; empty means any UUID.
    pub secret_keys: Vec<String>,
    pub catalogue: Catalogue,
    /// Stock overrides per (zone, offer id).
    pub stock: HashMap<(String, String), String>,
    pub projects: Vec<String>,
    counters: HashMap<String, u64>,

    pub fips: Vec<Fip>,
    /// Deleted FIPs, for the recycling fault.
    pub fip_graveyard: Vec<Fip>,
    pub servers: Vec<Server>,
    pub spns: Vec<Spn>,
    pub vpcs: Vec<Vpc>,
    pub pns: Vec<Pn>,
    pub gateways: Vec<Gateway>,
    pub gns: Vec<Gn>,
    pub gw_ips: Vec<GwIp>,
    pub ipam_ips: Vec<IpamIp>,
    pub ssh_keys: Vec<SshKey>,

    pub events: Vec<Event>,
    pub faults: Vec<Rule>,
    pub calls: Vec<Call>,
    /// Ids that reads must not see yet (eventual consistency), with how many
    /// more reads hide them.
    pub hidden: HashMap<String, u32>,
}

impl World {
    pub fn new(speed: f64, manual_clock: bool, seed: Option<u64>, secret_keys: Vec<String>) -> Self {
        World {
            clock: Clock::new(manual_clock),
            speed,
            start_wall: crate::util::epoch_now(),
            rng: Rng::new(seed),
            seq: 0,
            secret_keys,
            catalogue: Catalogue::load(),
            stock: HashMap::new(),
            projects: Vec::new(),
            counters: HashMap::new(),
            fips: Vec::new(),
            fip_graveyard: Vec::new(),
            servers: Vec::new(),
            spns: Vec::new(),
            vpcs: Vec::new(),
            pns: Vec::new(),
            gateways: Vec::new(),
            gns: Vec::new(),
            gw_ips: Vec::new(),
            ipam_ips: Vec::new(),
            ssh_keys: Vec::new(),
            events: Vec::new(),
            faults: Vec::new(),
            calls: Vec::new(),
            hidden: HashMap::new(),
        }
    }

    /// Forgets every resource, event, fault and call (keeps clock, speed and
    /// registered projects, whose default VPCs are created again).
    pub fn reset(&mut self) {
        self.fips.clear();
        self.fip_graveyard.clear();
        self.servers.clear();
        self.spns.clear();
        self.vpcs.clear();
        self.pns.clear();
        self.gateways.clear();
        self.gns.clear();
        self.gw_ips.clear();
        self.ipam_ips.clear();
        self.ssh_keys.clear();
        self.events.clear();
        self.faults.clear();
        self.calls.clear();
        self.hidden.clear();
        self.stock.clear();
        self.counters.clear();
        let projects = std::mem::take(&mut self.projects);
        for p in projects {
            self.register_project(&p);
        }
    }

    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    /// RFC 3339 timestamp of clock time `t`.
    pub fn stamp(&self, t: f64) -> String {
        rfc3339(self.start_wall + t)
    }

    pub fn new_id(&mut self) -> String {
        self.rng.uuid()
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A per-key counter starting at 0.
    pub fn counter(&mut self, key: &str) -> u64 {
        let c = self.counters.entry(key.to_string()).or_insert(0);
        let v = *c;
        *c += 1;
        v
    }

    /// Schedules a chain of steps for (`id`, `lane`), replacing any pending
    /// one; delays are nominal seconds, multiplied by the speed factor.
    pub fn chain(&mut self, ctx: &Ctx, id: &str, lane: &str, steps: Vec<(f64, Action)>) {
        self.cancel(id, Some(lane));
        let mut steps = steps;
        match ctx.fault_for_lane(lane) {
            Some(Transition::Stuck) => {
                steps.pop();
            }
            Some(Transition::Error) => {
                if let Some(last) = steps.last_mut() {
                    last.1 = last.1.ending_in("error");
                }
            }
            Some(Transition::Locked) => {
                if let Some(last) = steps.last_mut() {
                    last.1 = last.1.ending_in("locked");
                }
            }
            None => {}
        }
        for (delay, action) in steps {
            let seq = self.next_seq();
            self.events.push(Event {
                at: ctx.now + delay.max(0.0) * self.speed,
                seq,
                id: id.to_string(),
                lane: lane.to_string(),
                action,
            });
        }
    }

    /// Drops pending events of `id` (of one lane, or all).
    pub fn cancel(&mut self, id: &str, lane: Option<&str>) {
        self.events
            .retain(|e| !(e.id == id && lane.is_none_or(|l| e.lane == l)));
    }

    pub fn has_pending(&self, id: &str, lane: &str) -> bool {
        self.events.iter().any(|e| e.id == id && e.lane == lane)
    }

    /// Applies every event due at `now`, in time order.
    pub fn settle(&mut self, now: f64) {
        loop {
            let next = self
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.at <= now)
                .min_by(|(_, a), (_, b)| a.at.total_cmp(&b.at).then(a.seq.cmp(&b.seq)))
                .map(|(i, _)| i);
            match next {
                Some(i) => {
                    let ev = self.events.remove(i);
                    self.apply(ev);
                }
                None => break,
            }
        }
    }

    fn apply(&mut self, ev: Event) {
        let at = ev.at;
        match ev.action {
            Action::FipSet { status, server, mac } => crate::fip::apply_set(self, &ev.id, at, status, server, mac),
            Action::FipRemove => crate::fip::remove(self, &ev.id),
            Action::ServerStatus(s) => crate::baremetal::apply_status(self, &ev.id, at, s),
            Action::InstallStatus(s) => crate::baremetal::apply_install(self, &ev.id, at, s),
            Action::ServerRemove => crate::baremetal::remove(self, &ev.id),
            Action::OptionStatus { option_id, status } => {
                crate::baremetal::apply_option(self, &ev.id, &option_id, at, Some(status));
            }
            Action::OptionRemove { option_id } => crate::baremetal::apply_option(self, &ev.id, &option_id, at, None),
            Action::SpnStatus(s) => crate::bmpn::apply_status(self, &ev.id, at, s),
            Action::SpnRemove => crate::bmpn::remove(self, &ev.id),
            Action::GwStatus(s) => crate::vpcgw::apply_gw_status(self, &ev.id, at, s),
            Action::GwRemove => crate::vpcgw::remove_gateway(self, &ev.id),
            Action::GnStatus(s) => crate::vpcgw::apply_gn_status(self, &ev.id, at, s),
            Action::GnRemove => crate::vpcgw::remove_gn(self, &ev.id),
        }
    }

    /// Registers a project: it gets a default VPC in every region.
    pub fn register_project(&mut self, project: &str) {
        if !self.projects.iter().any(|p| p == project) {
            self.projects.push(project.to_string());
        }
        for region in REGIONS {
            crate::vpc::ensure_default_vpc(self, project, region);
        }
    }

    /// Eventual consistency: true (and one read used up) when `id` is hidden.
    pub fn hidden_read(&mut self, id: &str) -> bool {
        match self.hidden.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.hidden.remove(id);
                }
                true
            }
            _ => false,
        }
    }

    /// Removes hidden items from a list (each use counts as one read).
    pub fn filter_hidden(&mut self, items: Vec<Value>) -> Vec<Value> {
        if self.hidden.is_empty() {
            return items;
        }
        items
            .into_iter()
            .filter(|v| match v.get("id").and_then(Value::as_str) {
                Some(id) => {
                    let id = id.to_string();
                    !self.hidden_read(&id)
                }
                None => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_modes() {
        let mut c = Clock::new(true);
        assert_eq!(c.now(), 0.0);
        c.advance(5.0);
        assert_eq!(c.now(), 5.0);
        c.advance(-3.0);
        assert_eq!(c.now(), 5.0);
        c.set_manual(false);
        assert!(c.now() >= 5.0);
        c.set_manual(true);
        let t = c.now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(c.now(), t);
    }

    #[test]
    fn regions() {
        assert_eq!(region_of("fr-par-2"), "fr-par");
        assert_eq!(region_of("it-mil-1"), "it-mil");
    }

    #[test]
    fn chain_fault_rewrites_the_last_step() {
        let mut w = World::new(1.0, true, Some(7), vec![]);
        let mut ctx = Ctx::new(0.0);
        ctx.transition = Some(Transition::Error);
        w.chain(
            &ctx,
            "x",
            "status",
            vec![(5.0, Action::GwStatus("configuring".into())), (10.0, Action::GwRemove)],
        );
        assert_eq!(w.events.len(), 2);
        assert_eq!(w.events[1].action, Action::GwStatus("failed".into()));
        ctx.transition = Some(Transition::Stuck);
        w.chain(
            &ctx,
            "x",
            "status",
            vec![(5.0, Action::GwStatus("configuring".into())), (10.0, Action::GwRemove)],
        );
        assert_eq!(w.events.len(), 1, "replaced, and the last step dropped");
        ctx.has_install = true;
        w.chain(&ctx, "y", "status", vec![(5.0, Action::ServerStatus("ready".into()))]);
        assert_eq!(w.events.len(), 2, "with an install, stuck applies to the install lane");
    }
}
