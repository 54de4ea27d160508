//! The host's links as `ip -d -j addr show` shows them: what the planner
//! starts from.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value;

/// A VXLAN device's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub id: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub learning: bool,
    /// The underlay device it is bound to (`dev`).
    pub dev: Option<String>,
}

/// One link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `bridge`, `vxlan`, `veth`...; `None` for a plain device.
    pub kind: Option<String>,
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// The bridge it is a port of.
    pub master: Option<String>,
    pub ipv4: Vec<Ipv4Addr>,
    pub vxlan: Option<Vxlan>,
    /// As a bridge port: whether the bridge learns MAC addresses on it.
    pub port_learning: Option<bool>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            kind: None,
            mtu: 1500,
            up: false,
            master: None,
            ipv4: Vec::new(),
            vxlan: None,
            port_learning: None,
        }
    }
}

impl Link {
    pub fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// Every link of the host, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: BTreeMap<String, Link>,
}

impl Observed {
    /// The device holding `ip`.
    pub fn holder_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.links
            .iter()
            .find(|(_, l)| l.ipv4.contains(&ip))
            .map(|(n, _)| n.as_str())
    }

    /// The ports of bridge `bridge`.
    pub fn ports_of(&self, bridge: &str) -> Vec<&str> {
        self.links
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(bridge))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads what `ip -d -j addr show` prints (iproute2 6.1 shapes).
pub fn parse_links(json: &str) -> Result<Observed, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let links = root.as_array().ok_or("not a JSON array")?;
    let mut observed = Observed::default();
    for l in links {
        let Some(name) = text(l, "ifname") else {
            continue;
        };
        let info = l.get("linkinfo");
        let data = info.and_then(|i| i.get("info_data"));
        let kind = info.and_then(|i| text(i, "info_kind")).map(str::to_owned);
        let vxlan = match (kind.as_deref(), data) {
            (Some("vxlan"), Some(d)) => Some(Vxlan {
                id: d
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                local: text(d, "local").and_then(|a| a.parse().ok()),
                port: d
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(0),
                learning: d.get("learning").and_then(Value::as_bool).unwrap_or(true),
                dev: text(d, "link").map(str::to_owned),
            }),
            _ => None,
        };
        let port_learning = info
            .filter(|i| text(i, "info_slave_kind") == Some("bridge"))
            .and_then(|i| i.get("info_slave_data"))
            .and_then(|d| d.get("learning"))
            .and_then(Value::as_bool);
        let flags: Vec<&str> = l
            .get("flags")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let ipv4 = l
            .get("addr_info")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|i| text(i, "family") == Some("inet"))
                    .filter_map(|i| text(i, "local").and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        observed.links.insert(
            name.to_owned(),
            Link {
                kind,
                mtu: l
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                up: flags.contains(&"UP"),
                master: text(l, "master").map(str::to_owned),
                ipv4,
                vxlan,
                port_learning,
            },
        );
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What iproute2 6.1 prints for an underlay, a bridge and its VXLAN port (trimmed).
    const SHOWN: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
{"ifindex":3,"link":"p-h0","ifname":"scwpriv0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.0.0.2","prefixlen":24,"scope":"global"},{"family":"inet6","local":"fe80::1","prefixlen":64}]},
{"ifindex":4,"ifname":"onebr.100","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}},"addr_info":[]},
{"ifindex":5,"ifname":"vxlan100","flags":["BROADCAST","MULTICAST"],"mtu":1450,"master":"onebr.100","linkinfo":{"info_kind":"vxlan","info_data":{"id":100,"local":"10.0.0.2","link":"scwpriv0","port":4789,"learning":false},"info_slave_kind":"bridge","info_slave_data":{"state":"forwarding","learning":false}},"addr_info":[]}]"#;

    #[test]
    fn reads_links_vxlans_and_ports() {
        let o = parse_links(SHOWN).unwrap();
        assert_eq!(o.holder_of("10.0.0.2".parse().unwrap()), Some("scwpriv0"));
        assert_eq!(o.links["scwpriv0"].mtu, 1500);
        assert!(o.links["onebr.100"].is("bridge") && o.links["onebr.100"].up);
        let v = &o.links["vxlan100"];
        assert!(!v.up);
        assert_eq!(
            v.vxlan,
            Some(Vxlan {
                id: 100,
                local: Some("10.0.0.2".parse().unwrap()),
                port: 4789,
                learning: false,
                dev: Some("scwpriv0".into())
            })
        );
        assert_eq!(v.port_learning, Some(false));
        assert_eq!(o.ports_of("onebr.100"), ["vxlan100"]);
        assert_eq!(o.links["lo"].port_learning, None);
    }

    #[test]
    fn refuses_what_is_not_a_listing() {
        assert!(parse_links("{}").is_err());
        assert!(parse_links("").is_err());
        assert_eq!(parse_links("[]").unwrap(), Observed::default());
    }
}
