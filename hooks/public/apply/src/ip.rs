//! Links, the host's addresses, routes and proxy neighbour entries through
//! `ip`: read with one `ip -d -j -batch -` (every link with its addresses;
//! the routes and proxy entries a query names, one `exact`/`to` line each,
//! or all of them), changed with one `ip -batch -`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use public_plan::guard::NeighState;
use public_plan::observed::{HostAddress, Link, ObservedRoute};
use public_plan::{IpOp, Query};
use serde_json::Value;

use host_tools::run::{ApplyError, Tools};

/// What `ip` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpState {
    pub links: BTreeMap<String, Link>,
    /// Main table only.
    pub routes: Vec<ObservedRoute>,
    pub proxies: BTreeSet<(IpAddr, String)>,
    /// Neighbour entries (not proxies): (address, device).
    pub neighbours: BTreeMap<(IpAddr, String), NeighState>,
    /// The host's own addresses.
    pub addresses: Vec<HostAddress>,
}

/// The `ip` side effects.
pub trait Ip {
    /// Every link, and the routes (main table) and proxy entries `query`
    /// asks for (or more).
    fn observe(&self, query: &Query) -> Result<IpState, ApplyError>;
    /// Applies the commands in order, stopping at the first failure (the
    /// error's `failed_line` says which), or with `keep_going` trying every
    /// one (for undoing).
    fn apply(&self, ops: &[IpOp], keep_going: bool) -> Result<(), ApplyError>;
}

/// The real `ip`.
pub struct IpCommand<'a> {
    pub tools: &'a Tools,
}

/// Above this many targeted reads, `observe_batch` reads everything.
pub const MAX_LINES: usize = 48;

/// The reads for `query`, one `ip -batch` line each: links first, then
/// routes, then proxy entries, then neighbour entries; returns the script
/// and how many route and proxy lines.
pub fn observe_batch(query: &Query) -> (String, usize, usize) {
    let mut script = String::from("addr show\n");
    // Each `exact`/`to` line is a dump of the whole table filtered by
    // `ip`, and the neighbour tables are the whole host's (every
    // namespace): past a few dozen lines, one dump of each is cheaper.
    if query.all || query.routes.len() + query.proxies.len() + query.neighbours.len() > MAX_LINES {
        script.push_str("route show table all\nneigh show proxy\nneigh show\n");
        return (script, 1, 1);
    }
    for (dst, len) in &query.routes {
        script.push_str(&format!("route show table all exact {dst}/{len}\n"));
    }
    for addr in &query.proxies {
        script.push_str(&format!("neigh show proxy to {addr}\n"));
    }
    for addr in &query.neighbours {
        script.push_str(&format!("neigh show to {addr}\n"));
    }
    (script, query.routes.len(), query.proxies.len())
}

impl Ip for IpCommand<'_> {
    fn observe(&self, query: &Query) -> Result<IpState, ApplyError> {
        let args = ["-d", "-j", "-batch", "-"];
        let (script, routes, proxies) = observe_batch(query);
        let ran = self.tools.run("ip", &args, script.as_bytes())?;
        if !ran.success {
            return Err(self.tools.failure("ip", &args, &ran));
        }
        parse_batch(&ran.stdout, routes, proxies)
            .map_err(|e| ApplyError::new(format!("cannot read the output of `ip -d -j -batch -`: {e}")))
    }

    fn apply(&self, ops: &[IpOp], keep_going: bool) -> Result<(), ApplyError> {
        self.tools.ip_batch(ops, IpOp::args, keep_going, || {
            crate::root::Public::Ip {
                ops: ops.to_vec(),
                keep_going,
            }
            .to_json()
        })
    }
}

/// `02:00:ac:1e:00:02` as bytes.
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_route(r: &Value) -> Option<ObservedRoute> {
    if let Some(table) = r.get("table").and_then(Value::as_str)
        && table != "main"
    {
        return None;
    }
    let dst = r.get("dst")?.as_str()?;
    let (addr, len) = match dst.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None if dst == "default" => return None,
        None => {
            let a = dst.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    Some(ObservedRoute {
        dst: addr,
        len,
        dev: r.get("dev").and_then(Value::as_str).map(str::to_owned),
        gateway: r.get("gateway").and_then(Value::as_str).and_then(|g| g.parse().ok()),
        kind: r
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| *t != "unicast")
            .map(str::to_owned),
    })
}

/// Reads the JSON arrays `ip -d -j -batch -` prints for [`observe_batch`]:
/// links, then `routes` arrays of routes, then `proxies` arrays of proxy
/// entries, then arrays of neighbour entries.
pub fn parse_batch(json: &str, routes: usize, proxies: usize) -> Result<IpState, String> {
    let arrays: Vec<Value> = serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let Some((links, rest)) = arrays.split_first() else {
        return Err("no JSON array".into());
    };
    if rest.len() < routes + proxies {
        return Err(format!(
            "expected at least {} JSON arrays, got {}",
            routes + proxies + 1,
            arrays.len()
        ));
    }
    let (route_arrays, rest) = rest.split_at(routes);
    let (proxy_arrays, neighbour_arrays) = rest.split_at(proxies);
    let mut state = IpState::default();
    for l in links.as_array().ok_or("links: not an array")? {
        let Some(name) = l.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        let flags: Vec<&str> = l
            .get("flags")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for a in l.get("addr_info").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(addr), Some(len)) = (
                a.get("local")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpAddr>().ok()),
                a.get("prefixlen")
                    .and_then(Value::as_u64)
                    .and_then(|n| u8::try_from(n).ok()),
            ) {
                state.addresses.push(HostAddress {
                    addr,
                    len,
                    dev: name.to_owned(),
                });
            }
        }
        state.links.insert(
            name.to_owned(),
            Link {
                kind: l
                    .get("linkinfo")
                    .and_then(|i| i.get("info_kind"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                up: flags.contains(&"UP"),
                master: l.get("master").and_then(Value::as_str).map(str::to_owned),
            },
        );
    }
    for routes in route_arrays {
        state.routes.extend(
            routes
                .as_array()
                .ok_or("routes: not an array")?
                .iter()
                .filter_map(parse_route),
        );
    }
    for proxies in proxy_arrays {
        for p in proxies.as_array().ok_or("proxy entries: not an array")? {
            if let (Some(addr), Some(dev)) = (
                p.get("dst")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse::<IpAddr>().ok()),
                p.get("dev").and_then(Value::as_str),
            ) {
                state.proxies.insert((addr, dev.to_owned()));
            }
        }
    }
    for entries in neighbour_arrays {
        for n in entries.as_array().ok_or("neighbour entries: not an array")? {
            if let (Some(addr), Some(dev)) = (
                n.get("dst")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse::<IpAddr>().ok()),
                n.get("dev").and_then(Value::as_str),
            ) {
                let permanent = n
                    .get("state")
                    .and_then(Value::as_array)
                    .is_some_and(|s| s.iter().any(|x| x.as_str() == Some("PERMANENT")));
                let mac = n.get("lladdr").and_then(Value::as_str).and_then(parse_mac);
                state
                    .neighbours
                    .insert((addr, dev.to_owned()), NeighState { mac, permanent });
            }
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes iproute2 6.1 prints (trimmed).
    const SHOWN: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK"],"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},{"ifindex":3,"ifname":"scwpriv0","flags":["UP"],"addr_info":[{"family":"inet","local":"172.18.0.5","prefixlen":24,"scope":"global"},{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},{"ifindex":2,"ifname":"scwpub0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],"linkinfo":{"info_kind":"bridge"}},{"ifindex":4,"link":"vx1","ifname":"vx0","flags":["BROADCAST"],"master":"scwpub0","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"}}]
[{"type":"unicast","dst":"default","gateway":"10.0.0.1","dev":"ul0"},{"dst":"172.16.5.2","dev":"scwpub0","scope":"link","flags":["linkdown"]},{"dst":"2001:db8:1::/64","gateway":"fd5c::2","dev":"scwpub0","metric":1024},{"type":"local","dst":"fe80::1","dev":"scwpub0","table":"local"},{"type":"blackhole","dst":"192.0.2.0/24"},{"dst":"10.9.0.0/16","dev":"ul0","table":"100"}]
[{"dst":"172.16.5.3","dev":"scwpub0","proxy":null},{"dst":"2001:db8::1","dev":"scwpub0","proxy":null}]
[{"dst":"172.16.5.2","dev":"scwpub0","lladdr":"02:00:ac:10:05:02","state":["PERMANENT"]},{"dst":"172.16.5.4","dev":"scwpub0","lladdr":"02:00:ac:10:05:04","state":["STALE"]}]
"#;

    #[test]
    fn reads_links_routes_and_proxies() {
        let s = parse_batch(SHOWN, 1, 1).unwrap();
        assert_eq!(s.links["scwpub0"].kind.as_deref(), Some("bridge"));
        assert!(s.links["scwpub0"].up && !s.links["vx0"].up);
        assert_eq!(s.links["vx0"].master.as_deref(), Some("scwpub0"));
        let shown: Vec<String> = s
            .routes
            .iter()
            .map(|r| format!("{}/{} {:?} {:?} {:?}", r.dst, r.len, r.dev, r.gateway, r.kind))
            .collect();
        assert_eq!(
            shown,
            [
                "172.16.5.2/32 Some(\"scwpub0\") None None",
                "2001:db8:1::/64 Some(\"scwpub0\") Some(fd5c::2) None",
                "192.0.2.0/24 None None Some(\"blackhole\")",
            ]
        );
        assert_eq!(s.proxies.len(), 2);
        let permanent = NeighState {
            mac: Some([2, 0, 0xac, 0x10, 5, 2]),
            permanent: true,
        };
        assert_eq!(
            s.neighbours[&("172.16.5.2".parse().unwrap(), "scwpub0".to_owned())],
            permanent
        );
        assert!(!s.neighbours[&("172.16.5.4".parse().unwrap(), "scwpub0".to_owned())].permanent);
        let addresses: Vec<String> = s
            .addresses
            .iter()
            .map(|a| format!("{}/{} {}", a.addr, a.len, a.dev))
            .collect();
        assert_eq!(
            addresses,
            ["127.0.0.1/8 lo", "172.18.0.5/24 scwpriv0", "fe80::1/64 scwpriv0"]
        );
    }

    #[test]
    fn refuses_a_short_output() {
        assert!(parse_batch("[]\n", 2, 0).unwrap_err().contains("expected at least 3"));
        assert!(parse_batch("", 0, 0).is_err());
    }

    #[test]
    fn asks_only_for_what_the_query_names() {
        let mut q = Query::default();
        q.routes.insert(("172.30.0.4".parse().unwrap(), 32));
        q.proxies.insert("172.30.0.5".parse().unwrap());
        q.neighbours.insert("172.30.0.4".parse().unwrap());
        assert_eq!(
            observe_batch(&q),
            (
                "addr show\nroute show table all exact 172.30.0.4/32\nneigh show proxy to 172.30.0.5\n\
                 neigh show to 172.30.0.4\n"
                    .to_owned(),
                1,
                1
            )
        );
        assert_eq!(observe_batch(&Query::all()).1, 1);
    }
}
