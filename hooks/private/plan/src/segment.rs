//! What the VM's NICs of driver `scaleway_evpn` ask for, and the VXLAN
//! segment each one needs on this host.
//!
//! A NIC names its network's VNI (`VLAN_ID`, or without one
//! [`crate::net::AUTO_VNI_BASE`] + `NETWORK_ID`), bridge (`BRIDGE`), and
//! optionally the underlay device (`PHYDEV`), the MTU of the host's devices
//! (`MTU`) and the guest's MTU (`GUEST_MTU`). [`select`] reads them from the
//! document (every NIC validated before anything is touched);
//! [`resolve`] turns a request into a [`Segment`] with what the host says:
//! the underlay device, its address and its MTU.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use opennebula::attr::IfName;
use opennebula::vm::{Nic, Vm};

use crate::net::{AUTO_VNI_BASE, Vni};
use crate::observed::Observed;
use crate::{VN_MAD, VXLAN_OVERHEAD};

/// The smallest MTU the driver gives a segment (IPv6 needs 1280).
pub const MIN_MTU: u32 = 1280;

/// Why a NIC cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentError(pub String);

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SegmentError {}

/// One NIC of one VM: who uses a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct User {
    pub vm: u64,
    pub nic_id: u32,
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VM {} NIC {}", self.vm, self.nic_id)
    }
}

/// What one NIC asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicRequest {
    pub user: User,
    pub vni: Vni,
    pub bridge: IfName,
    pub phydev: Option<IfName>,
    /// `MTU`: the MTU of the host's devices for this network.
    pub mtu: Option<u32>,
    /// `GUEST_MTU`: the MTU the guest uses.
    pub guest_mtu: Option<u32>,
    /// `TARGET`: the VM's port on the bridge.
    pub port: IfName,
    /// The NIC's security group rules (`SECURITY_GROUPS`, group 0 when none).
    pub rules: Vec<secgroup::Rule>,
}

/// The NICs an action works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub requests: Vec<NicRequest>,
    /// A NIC (of any driver) is being hot-attached or detached: only our
    /// NICs with `ATTACH="YES"` are selected.
    pub hotplug: bool,
}

fn request(vm: &Vm, nic: &Nic) -> Result<NicRequest, SegmentError> {
    let path = nic.attrs.path();
    // A network made without VLAN_ID (oned gives a custom VN_MAD none) gets
    // its VNI from its network id.
    let network_id = match (nic.vlan_id, nic.network_id) {
        (None, None) => {
            return Err(SegmentError(format!(
                "{path}/VLAN_ID is missing, and so is NETWORK_ID (a network without VLAN_ID gets VNI {AUTO_VNI_BASE} + its id)"
            )));
        }
        (_, id) => id.unwrap_or_default(),
    };
    let vni = Vni::of_network(nic.vlan_id, network_id).map_err(|e| SegmentError(format!("{path}/VLAN_ID: {e}")))?;
    let bridge = nic
        .bridge
        .clone()
        .ok_or_else(|| SegmentError(format!("{path}/BRIDGE is missing")))?;
    if bridge.as_str().starts_with("vxlan") {
        return Err(SegmentError(format!(
            "{path}/BRIDGE = {bridge:?}: names starting with \"vxlan\" are the driver's VXLAN devices"
        )));
    }
    for (name, value) in [("MTU", nic.mtu), ("GUEST_MTU", nic.guest_mtu)] {
        if let Some(v) = value
            && !(MIN_MTU..=65_535).contains(&v)
        {
            return Err(SegmentError(format!(
                "{path}/{name} = {v} is not an MTU the driver can use ({MIN_MTU} to 65535)"
            )));
        }
    }
    let port = nic.target.clone().ok_or_else(|| {
        SegmentError(format!(
            "{path}/TARGET is missing (oned names the VM's port there; its security groups are set on it)"
        ))
    })?;
    let rules = secgroup::nic_rules(&vm.security_group_rules, &nic.attrs).map_err(|e| SegmentError(e.to_string()))?;
    Ok(NicRequest {
        user: User {
            vm: vm.id,
            nic_id: nic.nic_id,
        },
        vni,
        bridge,
        phydev: nic.phydev.clone(),
        mtu: nic.mtu,
        guest_mtu: nic.guest_mtu,
        port,
        rules,
    })
}

/// The NICs of driver `scaleway_evpn` an action works on: all of them, or
/// during a hot attach/detach the NIC being attached or detached. NIC
/// aliases ride on their parent NIC's segment and need nothing of their
/// own. Every NIC is validated, and within the VM one VNI has one bridge
/// and one bridge one VNI.
pub fn select(vm: &Vm) -> Result<Selection, SegmentError> {
    let nics = vm.touched_nics_of(VN_MAD).map_err(|e| SegmentError(e.to_string()))?;
    let requests = nics
        .iter()
        .filter(|n| !n.is_alias())
        .map(|n| request(vm, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut by_vni: BTreeMap<Vni, &NicRequest> = BTreeMap::new();
    let mut by_bridge: BTreeMap<&str, &NicRequest> = BTreeMap::new();
    for r in &requests {
        if let Some(other) = by_vni.insert(r.vni, r)
            && other.bridge != r.bridge
        {
            return Err(SegmentError(format!(
                "{} and {} are both on VNI {} but name different bridges ({} and {})",
                other.user, r.user, r.vni, other.bridge, r.bridge
            )));
        }
        if let Some(other) = by_bridge.insert(r.bridge.as_str(), r)
            && other.vni != r.vni
        {
            return Err(SegmentError(format!(
                "{} and {} share bridge {} but are on different VNIs ({} and {})",
                other.user, r.user, r.bridge, other.vni, r.vni
            )));
        }
    }
    Ok(Selection {
        requests,
        hotplug: vm.is_hotplug(),
    })
}

/// One VXLAN segment on this host: a VXLAN device for the VNI (learning
/// off, UDP port 4789, the local underlay address) on the network's bridge,
/// both with the same MTU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub vni: Vni,
    pub bridge: String,
    pub vxlan: String,
    /// The underlay device the VXLAN packets leave through.
    pub underlay: String,
    /// This host's address on the underlay (the VTEP address).
    pub local: Ipv4Addr,
    /// The MTU of the VXLAN device and the bridge.
    pub mtu: u32,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VNI {}: {} on bridge {} (local {} on {}, MTU {})",
            self.vni, self.vxlan, self.bridge, self.local, self.underlay, self.mtu
        )
    }
}

/// What the host's configuration says about the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// This host's underlay address.
    pub local: Ipv4Addr,
    /// The configured underlay device (it wins over the NICs' `PHYDEV`).
    pub device: Option<IfName>,
}

/// The segment a NIC needs: the underlay device is the configured one,
/// else the NIC's `PHYDEV`, else the device holding the local address; it
/// must hold that address. The devices' MTU is the underlay's minus the
/// VXLAN overhead (50 bytes), or the NIC's `MTU` if that is not larger; a
/// `GUEST_MTU` larger than it is refused (full-size guest frames would be
/// dropped). Returns the segment and the guest MTU (`GUEST_MTU`, by
/// default the segment's MTU).
pub fn resolve(req: &NicRequest, underlay: &Underlay, observed: &Observed) -> Result<(Segment, u32), SegmentError> {
    let holder = observed.holder_of(underlay.local);
    let device = match (&underlay.device, &req.phydev, holder) {
        (Some(d), _, _) | (None, Some(d), _) => d.as_str().to_owned(),
        (None, None, Some(h)) => h.to_owned(),
        (None, None, None) => {
            return Err(SegmentError(format!(
                "{}: no device of this host holds its underlay address {} (and the NIC has no PHYDEV)",
                req.user, underlay.local
            )));
        }
    };
    let Some(link) = observed.links.get(&device) else {
        return Err(SegmentError(format!(
            "{}: the underlay device {device} does not exist on this host",
            req.user
        )));
    };
    if holder != Some(device.as_str()) {
        let where_ = holder.map_or_else(|| "on no device".to_owned(), |h| format!("on {h}"));
        return Err(SegmentError(format!(
            "{}: the underlay device {device} does not hold this host's underlay address {} (it is {where_}); \
             set PHYDEV of the network, or UNDERLAY_DEVICE in the cluster description, to the device holding it",
            req.user, underlay.local
        )));
    }
    let max = link.mtu.saturating_sub(VXLAN_OVERHEAD);
    if max < MIN_MTU {
        return Err(SegmentError(format!(
            "{}: the underlay device {device} has MTU {}, which leaves {max} for VXLAN (at least {MIN_MTU} needed)",
            req.user, link.mtu
        )));
    }
    let mtu = match req.mtu {
        Some(m) if m > max => {
            return Err(SegmentError(format!(
                "{}: MTU = {m} does not fit in VXLAN over {device} (MTU {}): at most {max}",
                req.user, link.mtu
            )));
        }
        Some(m) => m,
        None => max,
    };
    let guest = match req.guest_mtu {
        Some(g) if g > mtu => {
            return Err(SegmentError(format!(
                "{}: GUEST_MTU = {g} is larger than the segment's MTU {mtu} (the underlay {device} has {}, \
                 VXLAN takes {VXLAN_OVERHEAD}): full-size guest frames would be dropped; set GUEST_MTU to at \
                 most {mtu}",
                req.user, link.mtu
            )));
        }
        Some(g) => g,
        None => mtu,
    };
    Ok((
        Segment {
            vni: req.vni,
            bridge: req.bridge.as_str().to_owned(),
            vxlan: req.vni.vxlan_device(),
            underlay: device,
            local: underlay.local,
            mtu,
        },
        guest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::Link;

    fn vm(nics: &str) -> Vm {
        let doc = format!("<VM><ID>7</ID><TEMPLATE>{nics}</TEMPLATE></VM>");
        Vm::from_element(&opennebula::xml::parse(doc.as_bytes()).unwrap()).unwrap()
    }

    fn nic(id: u32, extra: &str) -> String {
        format!("<NIC><NIC_ID>{id}</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD><TARGET>one-7-{id}</TARGET>{extra}</NIC>")
    }

    const GOOD: &str = "<VLAN_ID>100</VLAN_ID><BRIDGE>onebr.100</BRIDGE><PHYDEV>scwpriv0</PHYDEV>";

    fn host(mtu: u32) -> Observed {
        let mut o = Observed::default();
        o.links.insert(
            "scwpriv0".into(),
            Link {
                mtu,
                up: true,
                ipv4: vec!["10.0.0.2".parse().unwrap()],
                ..Link::default()
            },
        );
        o.links.insert(
            "eth0".into(),
            Link {
                mtu: 1500,
                up: true,
                ipv4: vec!["192.0.2.10".parse().unwrap()],
                ..Link::default()
            },
        );
        o
    }

    fn underlay() -> Underlay {
        Underlay {
            local: "10.0.0.2".parse().unwrap(),
            device: None,
        }
    }

    #[test]
    fn selects_nics_and_skips_aliases_and_other_drivers() {
        let alias = "<NIC_ALIAS><NIC_ID>2</NIC_ID><ALIAS_ID>0</ALIAS_ID><PARENT_ID>0</PARENT_ID>\
                     <VN_MAD>scaleway_evpn</VN_MAD><VLAN_ID>100</VLAN_ID><BRIDGE>onebr.100</BRIDGE></NIC_ALIAS>";
        let other = "<NIC><NIC_ID>3</NIC_ID><VN_MAD>bridge</VN_MAD></NIC>";
        let s = select(&vm(&format!("{}{alias}{other}", nic(0, GOOD)))).unwrap();
        assert!(!s.hotplug);
        assert_eq!(s.requests.len(), 1);
        assert_eq!(s.requests[0].vni.get(), 100);
        assert_eq!(s.requests[0].user.to_string(), "VM 7 NIC 0");
        assert_eq!(s.requests[0].port.as_str(), "one-7-0");
        assert_eq!(
            s.requests[0].rules,
            secgroup::default_rules(),
            "no SECURITY_GROUPS: group 0's default"
        );
        // During a hot attach of another driver's NIC, none of ours.
        let attached = "<NIC><NIC_ID>4</NIC_ID><VN_MAD>scaleway</VN_MAD><ATTACH>YES</ATTACH></NIC>";
        let s = select(&vm(&format!("{}{attached}", nic(0, GOOD)))).unwrap();
        assert!(s.hotplug && s.requests.is_empty());
        let s = select(&vm(&format!(
            "{}{}",
            nic(0, GOOD),
            nic(1, &format!("{GOOD}<ATTACH>YES</ATTACH>"))
        )))
        .unwrap();
        assert_eq!(s.requests.iter().map(|r| r.user.nic_id).collect::<Vec<_>>(), [1]);
    }

    /// oned gives a custom VN_MAD no automatic VLAN_ID: the VNI comes from
    /// the network id, the same on every host, distinct per network.
    #[test]
    fn a_network_without_vlan_id_gets_a_vni_from_its_id() {
        let doc = format!(
            "<VM><ID>7</ID><TEMPLATE>{}{}</TEMPLATE></VM>",
            nic(0, "<NETWORK_ID>3</NETWORK_ID><BRIDGE>onebr3</BRIDGE>"),
            nic(1, "<NETWORK_ID>4</NETWORK_ID><BRIDGE>onebr4</BRIDGE>")
        );
        let vm = Vm::from_element(&opennebula::xml::parse(doc.as_bytes()).unwrap()).unwrap();
        let vnis: Vec<u32> = select(&vm).unwrap().requests.iter().map(|r| r.vni.get()).collect();
        assert_eq!(vnis, [1_000_003, 1_000_004]);
    }

    #[test]
    fn refuses_bad_nics_naming_the_attribute() {
        let cases = [
            (nic(0, "<BRIDGE>onebr.1</BRIDGE>"), "NIC[NIC_ID=0]/VLAN_ID is missing"),
            (
                nic(0, "<VLAN_ID>0</VLAN_ID><BRIDGE>b</BRIDGE>"),
                "VLAN_ID: 0 is not a VXLAN",
            ),
            (
                nic(0, "<VLAN_ID>16777216</VLAN_ID><BRIDGE>b</BRIDGE>"),
                "VLAN_ID: 16777216",
            ),
            (nic(0, "<VLAN_ID>5</VLAN_ID>"), "BRIDGE is missing"),
            (
                nic(0, "<VLAN_ID>1000000</VLAN_ID><BRIDGE>b</BRIDGE>"),
                "1000000 is reserved for networks without a VLAN_ID",
            ),
            (
                nic(0, "<VLAN_ID>5</VLAN_ID><BRIDGE>vxlan5</BRIDGE>"),
                "driver's VXLAN devices",
            ),
            (
                nic(0, "<VLAN_ID>5</VLAN_ID><BRIDGE>b</BRIDGE><GUEST_MTU>100</GUEST_MTU>"),
                "GUEST_MTU = 100",
            ),
            (nic(0, "<VLAN_ID>5</VLAN_ID><BRIDGE>b;x</BRIDGE>"), "BRIDGE"),
            (
                format!("<NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD>{GOOD}</NIC>"),
                "NIC[NIC_ID=0]/TARGET is missing",
            ),
            (
                nic(0, &format!("{GOOD}<SECURITY_GROUPS>0,x</SECURITY_GROUPS>")),
                "SECURITY_GROUPS",
            ),
            (
                format!(
                    "{}{}",
                    nic(0, GOOD),
                    nic(1, "<VLAN_ID>100</VLAN_ID><BRIDGE>other</BRIDGE>")
                ),
                "VM 7 NIC 0 and VM 7 NIC 1 are both on VNI 100 but name different bridges",
            ),
            (
                format!(
                    "{}{}",
                    nic(0, GOOD),
                    nic(1, "<VLAN_ID>200</VLAN_ID><BRIDGE>onebr.100</BRIDGE>")
                ),
                "share bridge onebr.100 but are on different VNIs",
            ),
        ];
        for (doc, expected) in cases {
            let e = select(&vm(&doc)).unwrap_err().to_string();
            assert!(e.contains(expected), "{doc}: {e:?} should contain {expected:?}");
        }
    }

    #[test]
    fn resolves_mtus_and_the_underlay() {
        let req = |extra: &str| select(&vm(&nic(1, &format!("{GOOD}{extra}")))).unwrap().requests[0].clone();
        let (s, guest) = resolve(&req(""), &underlay(), &host(1500)).unwrap();
        assert_eq!(
            s.to_string(),
            "VNI 100: vxlan100 on bridge onebr.100 (local 10.0.0.2 on scwpriv0, MTU 1450)"
        );
        assert_eq!(guest, 1450, "GUEST_MTU defaults to the segment's MTU");
        let (s, guest) = resolve(&req("<GUEST_MTU>1400</GUEST_MTU>"), &underlay(), &host(9000)).unwrap();
        assert_eq!((s.mtu, guest), (8950, 1400));
        let (s, _) = resolve(&req("<MTU>1400</MTU>"), &underlay(), &host(1500)).unwrap();
        assert_eq!(s.mtu, 1400);
        let e = resolve(&req("<GUEST_MTU>1500</GUEST_MTU>"), &underlay(), &host(1500)).unwrap_err();
        assert!(
            e.0.contains("GUEST_MTU = 1500 is larger than the segment's MTU 1450"),
            "{e}"
        );
        let e = resolve(&req("<MTU>1500</MTU>"), &underlay(), &host(1500)).unwrap_err();
        assert!(
            e.0.contains("MTU = 1500 does not fit in VXLAN over scwpriv0 (MTU 1500): at most 1450"),
            "{e}"
        );
        let e = resolve(&req(""), &underlay(), &host(1300)).unwrap_err();
        assert!(e.0.contains("leaves 1250 for VXLAN"), "{e}");
        // The configured device wins over PHYDEV, and must hold the address.
        let configured = Underlay {
            device: Some("eth0".parse().unwrap()),
            ..underlay()
        };
        let e = resolve(&req(""), &configured, &host(1500)).unwrap_err();
        assert!(
            e.0.contains("eth0 does not hold this host's underlay address 10.0.0.2 (it is on scwpriv0)"),
            "{e}"
        );
        // Without PHYDEV, the device holding the address.
        let r = select(&vm(&nic(1, "<VLAN_ID>100</VLAN_ID><BRIDGE>onebr.100</BRIDGE>")))
            .unwrap()
            .requests[0]
            .clone();
        assert_eq!(resolve(&r, &underlay(), &host(1500)).unwrap().0.underlay, "scwpriv0");
        let e = resolve(&req("").clone(), &underlay(), &Observed::default()).unwrap_err();
        assert!(e.0.contains("the underlay device scwpriv0 does not exist"), "{e}");
    }
}
