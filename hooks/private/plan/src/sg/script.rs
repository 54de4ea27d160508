//! The security group tables as `nft -f -` scripts: replaced whole, or
//! updated in place from what the record said they held.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use secgroup::chain::Fingerprints;
use secgroup::{Direction, Fingerprint, Rule};

use super::{FILTER_COMMENT, Filters, OURS, PORTS_COMMENT, PortFilter, from_mark, to_mark};

/// `family table` of our two tables ([`super::PORTS_TABLE`], [`super::FILTER_TABLE`]).
const PORTS: &str = "bridge one_scaleway_evpn_ports";
const FILTER: &str = "inet one_scaleway_evpn_sg";

/// One chain: its table, name, hook and priority (base chains), rules.
struct Chain {
    table: &'static str,
    name: String,
    base: Option<(&'static str, &'static str)>,
    rules: Vec<String>,
}

/// One map: its table, name, types, elements.
struct Map {
    table: &'static str,
    name: &'static str,
    types: &'static str,
    elements: Vec<String>,
}

/// The mark's setter of each port.
fn port_chains(f: &Filters) -> Vec<Chain> {
    f.ports
        .iter()
        .map(|p| Chain {
            table: PORTS,
            name: format!("port-{}", p.id),
            base: None,
            rules: vec![
                format!(
                    "meta mark & {OURS:#010x} != {OURS:#010x} meta mark set {:#010x} return",
                    to_mark(p.id)
                ),
                format!("meta mark set meta mark & 0xffff0000 | {:#010x}", p.id),
            ],
        })
        .collect()
}

const DIRECTIONS: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

/// The chains the ports' rules need, by name: one per rule set and
/// direction, shared by every port with those rules (`secgroup::chain`);
/// none for a direction the rules leave wide open (the port's element in
/// the map then `continue`s).
fn nic_chains<'a>(f: &'a Filters, fps: &mut Fingerprints<'a>) -> BTreeMap<String, Chain> {
    let mut out = BTreeMap::new();
    for p in &f.ports {
        for (d, fp) in DIRECTIONS.into_iter().zip(fps.of(&p.rules)) {
            if let Some(fp) = fp {
                let name = secgroup::chain::name(fp, d);
                out.entry(name.clone()).or_insert_with(|| Chain {
                    table: FILTER,
                    name,
                    base: None,
                    rules: secgroup::render::chain(&p.rules, d),
                });
            }
        }
    }
    out
}

/// The element of port `p` in the map of direction `d` (`from_vm`: its
/// frames, `to_vm`: frames to it).
fn verdict<'a>(p: &'a PortFilter, d: Direction, fps: &mut Fingerprints<'a>) -> String {
    let key = match d {
        Direction::Outbound => from_mark(p.id),
        Direction::Inbound => to_mark(p.id),
    };
    match target(&p.rules, d, fps) {
        Some(fp) => format!("{key:#010x} : jump {}", secgroup::chain::name(fp, d)),
        None => format!("{key:#010x} : continue"),
    }
}

/// The chain of `rules` in direction `d` (`None`: open).
fn target<'a>(rules: &'a [Rule], d: Direction, fps: &mut Fingerprints<'a>) -> Option<Fingerprint> {
    let [i, o] = fps.of(rules);
    match d {
        Direction::Inbound => i,
        Direction::Outbound => o,
    }
}

/// The map of direction `d`.
fn map_of(d: Direction) -> &'static str {
    match d {
        Direction::Outbound => "from_vm",
        Direction::Inbound => "to_vm",
    }
}

/// The base chains.
fn base_chains() -> Vec<Chain> {
    // Each base chain is named after its hook.
    let chain = |table, hook: &'static str, priority, rules: &[&str]| Chain {
        table,
        name: hook.to_owned(),
        base: Some((hook, priority)),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
    };
    vec![
        chain(PORTS, "prerouting", "-200", &["meta mark set iifname map @marks"]),
        chain(PORTS, "forward", "-200", &["oifname vmap @ports"]),
        chain(
            FILTER,
            "forward",
            "filter",
            &[
                "meta mark & 0xffff0000 vmap @from_vm",
                "meta mark & 0x8000ffff vmap @to_vm",
            ],
        ),
        chain(FILTER, "input", "filter", &["meta mark & 0xffff0000 vmap @from_vm"]),
    ]
}

fn maps<'a>(f: &'a Filters, fps: &mut Fingerprints<'a>) -> Vec<Map> {
    let mut verdicts = |d: Direction| -> Vec<String> { f.ports.iter().map(|p| verdict(p, d, fps)).collect() };
    let (from_vm, to_vm) = (verdicts(Direction::Outbound), verdicts(Direction::Inbound));
    vec![
        Map {
            table: PORTS,
            name: "marks",
            types: "ifname : mark",
            elements: f
                .vxlans
                .iter()
                .map(|v| format!("\"{v}\" : {OURS:#010x}"))
                .chain(
                    f.ports
                        .iter()
                        .map(|p| format!("\"{}\" : {:#010x}", p.port, from_mark(p.id))),
                )
                .collect(),
        },
        Map {
            table: PORTS,
            name: "ports",
            types: "ifname : verdict",
            elements: f
                .ports
                .iter()
                .map(|p| format!("\"{}\" : jump port-{}", p.port, p.id))
                .collect(),
        },
        Map {
            table: FILTER,
            name: "from_vm",
            types: "mark : verdict",
            elements: from_vm,
        },
        Map {
            table: FILTER,
            name: "to_vm",
            types: "mark : verdict",
            elements: to_vm,
        },
    ]
}

/// The script that removes both tables (nothing when they are absent).
fn removal() -> String {
    format!("table {PORTS}\ndelete table {PORTS}\ntable {FILTER}\ndelete table {FILTER}\n")
}

/// Both tables made `f` (after [`removal`]).
fn body(f: &Filters) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table {PORTS} {{ comment \"{PORTS_COMMENT}\"; }}");
    let _ = writeln!(out, "add table {FILTER} {{ comment \"{FILTER_COMMENT}\"; }}");
    // Regular chains first: the maps' elements and the base rules jump to them.
    let mut fps = Fingerprints::default();
    for c in port_chains(f).iter().chain(nic_chains(f, &mut fps).values()) {
        add_chain(&mut out, c);
    }
    let maps = maps(f, &mut fps);
    for m in &maps {
        let _ = writeln!(out, "add map {} {} {{ type {}; }}", m.table, m.name, m.types);
    }
    for c in &base_chains() {
        add_chain(&mut out, c);
    }
    for m in &maps {
        add_elements(&mut out, m.table, m.name, &m.elements);
    }
    out
}

/// `add chain` (with its hook for a base chain) and its rules.
fn add_chain(out: &mut String, c: &Chain) {
    match c.base {
        Some((hook, priority)) => {
            let _ = writeln!(
                out,
                "add chain {} {} {{ type filter hook {hook} priority {priority}; policy accept; }}",
                c.table, c.name
            );
        }
        None => {
            let _ = writeln!(out, "add chain {} {}", c.table, c.name);
        }
    }
    add_rules(out, c);
}

fn add_rules(out: &mut String, c: &Chain) {
    for r in &c.rules {
        let _ = writeln!(out, "add rule {} {} {r}", c.table, c.name);
    }
}

fn add_elements(out: &mut String, table: &str, map: &str, elements: &[String]) {
    if !elements.is_empty() {
        let _ = writeln!(out, "add element {table} {map} {{ {} }}", elements.join(", "));
    }
}

/// The keys of a map's elements (`key : value`).
fn keys(elements: &[String]) -> Vec<String> {
    elements
        .iter()
        .filter_map(|e| e.split_once(" : ").map(|(k, _)| k.to_owned()))
        .collect()
}

impl Filters {
    /// The `nft -f -` script that makes both tables exactly this (created
    /// if missing, their old content dropped, in one transaction); without
    /// ports, the tables removed.
    pub fn script(&self) -> String {
        let mut out = removal();
        if !self.ports.is_empty() {
            out.push_str(&body(self));
        }
        out
    }

    /// The script that turns tables holding exactly `before` into this,
    /// touching only what differs: a new port's chains and elements added,
    /// a gone port's deleted, a port whose rules changed has its two chains
    /// rewritten, VXLAN devices added or deleted; nothing when nothing
    /// differs. (Adding is what the kernel does cheaply: a transaction that
    /// deletes or rewrites anything costs about 15 ms more.) It fails, and
    /// changes nothing, when the tables are not `before` (an element or a
    /// chain missing or different): then [`Filters::script`]. From or to no
    /// port, the tables are written whole.
    pub fn update_script(&self, before: &Filters) -> String {
        if before.ports.is_empty() || self.ports.is_empty() {
            return self.script();
        }
        let identity = |p: &super::PortFilter| (p.vm, p.nic_id, p.port.clone(), p.id);
        let old: BTreeSet<_> = before.ports.iter().map(identity).collect();
        let new: BTreeSet<_> = self.ports.iter().map(identity).collect();
        let gone = Filters {
            ports: before
                .ports
                .iter()
                .filter(|p| !new.contains(&identity(p)))
                .cloned()
                .collect(),
            vxlans: before
                .vxlans
                .iter()
                .filter(|v| !self.vxlans.contains(v))
                .cloned()
                .collect(),
        };
        let added = Filters {
            ports: self
                .ports
                .iter()
                .filter(|p| !old.contains(&identity(p)))
                .cloned()
                .collect(),
            vxlans: self
                .vxlans
                .iter()
                .filter(|v| !before.vxlans.contains(v))
                .cloned()
                .collect(),
        };
        // Ports whose rules changed keep their numbers: only their
        // elements change, direction by direction, to the chains of their
        // new rules.
        let changed: Vec<(&PortFilter, &PortFilter)> = self
            .ports
            .iter()
            .filter_map(|p| {
                before
                    .ports
                    .iter()
                    .find(|b| identity(b) == identity(p) && b.rules != p.rules)
                    .map(|b| (b, p))
            })
            .collect();
        let mut fps = Fingerprints::default();
        let (old_chains, new_chains) = (nic_chains(before, &mut fps), nic_chains(self, &mut fps));
        let mut out = String::new();
        for c in &port_chains(&added) {
            add_chain(&mut out, c);
        }
        for (name, c) in &new_chains {
            if !old_chains.contains_key(name) {
                // Flushed first: a chain left by an action interrupted
                // before its record was saved is written once, not twice.
                let _ = writeln!(out, "add chain {} {name}\nflush chain {} {name}", c.table, c.table);
                add_rules(&mut out, c);
            }
        }
        let mut repointed = Vec::new();
        for &(old, new) in &changed {
            for d in DIRECTIONS {
                if target(&old.rules, d, &mut fps) != target(&new.rules, d, &mut fps) {
                    repointed.push((new, d));
                }
            }
        }
        for m in &maps(&gone, &mut fps) {
            let keys = keys(&m.elements);
            if !keys.is_empty() {
                let _ = writeln!(out, "delete element {} {} {{ {} }}", m.table, m.name, keys.join(", "));
            }
        }
        for &(p, d) in &repointed {
            let keys = keys(&[verdict(p, d, &mut fps)]);
            let _ = writeln!(out, "delete element {FILTER} {} {{ {} }}", map_of(d), keys.join(", "));
        }
        let unused = old_chains
            .iter()
            .filter(|(name, _)| !new_chains.contains_key(*name))
            .map(|(_, c)| c);
        for c in port_chains(&gone).iter().chain(unused) {
            let _ = writeln!(
                out,
                "flush chain {} {}\ndelete chain {} {}",
                c.table, c.name, c.table, c.name
            );
        }
        for m in &maps(&added, &mut fps) {
            add_elements(&mut out, m.table, m.name, &m.elements);
        }
        for &(p, d) in &repointed {
            add_elements(&mut out, FILTER, map_of(d), &[verdict(p, d, &mut fps)]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FILTER_TABLE, PORTS_TABLE};
    use super::*;

    fn port(vm: u64, id: u16, ssh_only: bool) -> PortFilter {
        let mut rules = secgroup::default_rules();
        if ssh_only {
            rules[1].protocol = secgroup::Protocol::Tcp;
            rules[1].ports = vec![secgroup::PortRange { first: 22, last: 22 }];
        }
        PortFilter {
            vm,
            nic_id: 0,
            port: format!("one-{vm}-0"),
            id,
            rules,
        }
    }

    fn filters(ports: Vec<PortFilter>) -> Filters {
        Filters {
            ports,
            vxlans: vec!["vxlan100".into()],
        }
    }

    /// Ports with the same rules share one chain: written once, kept while a
    /// port jumps to it, deleted with the last one.
    #[test]
    fn ports_of_one_rule_set_share_a_chain() {
        let chain = secgroup::chain::name(
            secgroup::Fingerprint::of(&port(7, 1, true).rules, Direction::Inbound),
            Direction::Inbound,
        );
        let both = filters(vec![port(7, 1, true), port(8, 2, true)]);
        let whole = both.script();
        assert_eq!(
            whole.matches(&format!("add chain {FILTER} {chain}\n")).count(),
            1,
            "{whole}"
        );
        assert_eq!(whole.matches(&format!("jump {chain}")).count(), 2, "{whole}");
        let one = filters(vec![port(8, 2, true)]);
        let gone = format!("delete chain {FILTER} {chain}");
        assert!(!one.update_script(&both).contains(&gone));
        // A third port with those rules: its elements only.
        let three = filters(vec![port(7, 1, true), port(8, 2, true), port(9, 3, true)]);
        assert!(!three.update_script(&both).contains(&format!("add chain {FILTER}")));
        // The last port's rules open everything: its element re-pointed, the chain deleted.
        let open = filters(vec![port(8, 2, false)]);
        let update = open.update_script(&one);
        assert!(update.contains(&gone), "{update}");
        assert!(update.contains("to_vm { 0x80000002 : continue }"), "{update}");
    }

    #[test]
    fn the_tables_are_ours() {
        assert_eq!(PORTS, format!("bridge {PORTS_TABLE}"));
        assert_eq!(FILTER, format!("inet {FILTER_TABLE}"));
    }
}
