//! The VM document oned sends the network drivers (`<VM>`, base64 on
//! stdin), built the way oned builds it (the shape of
//! `tests/fixtures/vm/deploy.xml` and `migrate.xml`: every NIC attribute
//! oned copies from the network and its address range, a history record
//! per host the VM ran on, the last one current) and checked against
//! OpenNebula's `vm.xsd` with `xmllint` before any driver sees it.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// A public NIC (network `scaleway`, one flexible IP's address range).
#[derive(Debug, Clone)]
pub struct PublicNic {
    pub network_id: i64,
    pub network: String,
    pub ar_id: i64,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub gateway: Ipv4Addr,
    pub external_ip: Ipv4Addr,
    pub fip_id: String,
    pub zone: String,
}

/// A private NIC (network `scaleway_evpn`).
#[derive(Debug, Clone)]
pub struct PrivateNic {
    pub network_id: i64,
    pub network: String,
    pub ar_id: i64,
    pub bridge: String,
    pub phydev: String,
    pub vlan_id: u32,
    pub guest_mtu: u32,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub prefix: u8,
}

/// A host the VM ran on (`HISTORY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stay {
    /// The OpenNebula host name (its public address).
    pub hostname: String,
    pub hid: i64,
    pub cid: i64,
}

/// What a document is made from.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub id: u64,
    pub name: String,
    pub public: PublicNic,
    pub private: PrivateNic,
    /// Oldest first; the last is the current host.
    pub history: Vec<Stay>,
    /// 3 RUNNING (with LCM_STATE), ...
    pub lcm_state: u32,
}

/// The NIC's host-side device (libvirt's tap): `one-<vm>-<nic>`.
pub fn target(vm: u64, nic: u32) -> String {
    format!("one-{vm}-{nic}")
}

fn cdata(out: &mut String, indent: &str, name: &str, value: &str) {
    // Our values are addresses, names and numbers: never "]]>".
    let _ = writeln!(out, "{indent}<{name}><![CDATA[{value}]]></{name}>");
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

impl VmSpec {
    fn nic_public(&self, out: &mut String) {
        let n = &self.public;
        let i = "      ";
        out.push_str("    <NIC>\n");
        for (k, v) in [
            ("AR_ID", n.ar_id.to_string()),
            ("BRIDGE", n.bridge.clone()),
            ("BRIDGE_TYPE", "linux".into()),
            ("CLUSTER_ID", self.history.last().map_or(0, |h| h.cid).to_string()),
            ("EXTERNAL_IP", n.external_ip.to_string()),
            ("GATEWAY", n.gateway.to_string()),
            ("IP", n.ip.to_string()),
            ("MAC", n.mac.clone()),
            ("MODEL", "virtio".into()),
            ("NAME", "NIC0".into()),
            ("NETWORK", n.network.clone()),
            ("NETWORK_ID", n.network_id.to_string()),
            ("NETWORK_MASK", "255.255.255.254".into()),
            ("NETWORK_UNAME", "oneadmin".into()),
            ("NIC_ID", "0".into()),
            ("SCALEWAY_IP_ID", n.fip_id.clone()),
            ("SCALEWAY_ZONE", n.zone.clone()),
            ("SECURITY_GROUPS", "0".into()),
            ("TARGET", target(self.id, 0)),
            ("VN_MAD", "scaleway".into()),
        ] {
            cdata(out, i, k, &v);
        }
        out.push_str("    </NIC>\n");
    }

    fn nic_private(&self, out: &mut String) {
        let n = &self.private;
        let i = "      ";
        out.push_str("    <NIC>\n");
        for (k, v) in [
            ("AR_ID", n.ar_id.to_string()),
            ("BRIDGE", n.bridge.clone()),
            ("BRIDGE_TYPE", "linux".into()),
            ("CLUSTER_ID", self.history.last().map_or(0, |h| h.cid).to_string()),
            ("GUEST_MTU", n.guest_mtu.to_string()),
            ("IP", n.ip.to_string()),
            ("MAC", n.mac.clone()),
            ("MODEL", "virtio".into()),
            ("NAME", "NIC1".into()),
            ("NETWORK", n.network.clone()),
            ("NETWORK_ID", n.network_id.to_string()),
            ("NETWORK_UNAME", "oneadmin".into()),
            ("NIC_ID", "1".into()),
            ("PHYDEV", n.phydev.clone()),
            ("SECURITY_GROUPS", "0".into()),
            ("TARGET", target(self.id, 1)),
            ("VLAN_ID", n.vlan_id.to_string()),
            ("VN_MAD", "scaleway_evpn".into()),
        ] {
            cdata(out, i, k, &v);
        }
        out.push_str("    </NIC>\n");
    }

    fn history(&self, out: &mut String) {
        const T0: u64 = 1_764_060_000;
        out.push_str("  <HISTORY_RECORDS>\n");
        let last = self.history.len().saturating_sub(1);
        for (seq, h) in self.history.iter().enumerate() {
            let start = T0 + 10_000 * seq as u64;
            let end = if seq == last { 0 } else { start + 10_000 };
            let _ = write!(
                out,
                "    <HISTORY>\n      <OID>{id}</OID>\n      <SEQ>{seq}</SEQ>\n      <HOSTNAME>{host}</HOSTNAME>\n      \
                 <HID>{hid}</HID>\n      <CID>{cid}</CID>\n      <STIME>{start}</STIME>\n      <ETIME>{end}</ETIME>\n      \
                 <VM_MAD><![CDATA[kvm]]></VM_MAD>\n      <TM_MAD><![CDATA[ssh]]></TM_MAD>\n      <DS_ID>0</DS_ID>\n      \
                 <PLAN_ID>-1</PLAN_ID>\n      <ACTION_ID>-1</ACTION_ID>\n      <PSTIME>{start}</PSTIME>\n      \
                 <PETIME>{start}</PETIME>\n      <RSTIME>{start}</RSTIME>\n      <RETIME>{end}</RETIME>\n      \
                 <ESTIME>0</ESTIME>\n      <EETIME>0</EETIME>\n      <ACTION>{action}</ACTION>\n      <UID>-1</UID>\n      \
                 <GID>-1</GID>\n      <REQUEST_ID>-1</REQUEST_ID>\n    </HISTORY>\n",
                id = self.id,
                host = h.hostname,
                hid = h.hid,
                cid = h.cid,
                // 2: live migration (the records the VM left), 0: none.
                action = if seq == last { 0 } else { 2 },
            );
        }
        out.push_str("  </HISTORY_RECORDS>\n");
    }

    /// The `<VM>` document.
    pub fn xml(&self) -> String {
        let (p, q) = (&self.public, &self.private);
        let mut s = format!(
            "<VM>\n  <ID>{id}</ID>\n  <UID>0</UID>\n  <GID>0</GID>\n  <UNAME>oneadmin</UNAME>\n  <GNAME>oneadmin</GNAME>\n  \
             <NAME>{name}</NAME>\n  <PERMISSIONS>\n    <OWNER_U>1</OWNER_U>\n    <OWNER_M>1</OWNER_M>\n    \
             <OWNER_A>0</OWNER_A>\n    <GROUP_U>0</GROUP_U>\n    <GROUP_M>0</GROUP_M>\n    <GROUP_A>0</GROUP_A>\n    \
             <OTHER_U>0</OTHER_U>\n    <OTHER_M>0</OTHER_M>\n    <OTHER_A>0</OTHER_A>\n  </PERMISSIONS>\n  \
             <LAST_POLL>0</LAST_POLL>\n  <STATE>3</STATE>\n  <LCM_STATE>{lcm}</LCM_STATE>\n  <PREV_STATE>3</PREV_STATE>\n  \
             <PREV_LCM_STATE>{lcm}</PREV_LCM_STATE>\n  <RESCHED>0</RESCHED>\n  <STIME>1764060000</STIME>\n  \
             <ETIME>0</ETIME>\n  <DEPLOY_ID>one-{id}</DEPLOY_ID>\n  <MONITORING/>\n  <SCHED_ACTIONS/>\n  <TEMPLATE>\n",
            id = self.id,
            name = self.name,
            lcm = self.lcm_state,
        );
        s.push_str("    <CONTEXT>\n");
        let i = "      ";
        for (k, v) in [
            ("DISK_ID", "1".to_owned()),
            ("ETH0_EXTERNAL_IP", p.external_ip.to_string()),
            ("ETH0_GATEWAY", p.gateway.to_string()),
            ("ETH0_IP", p.ip.to_string()),
            ("ETH0_MAC", p.mac.clone()),
            ("ETH0_MASK", "255.255.255.254".into()),
            ("ETH1_IP", q.ip.to_string()),
            ("ETH1_MAC", q.mac.clone()),
            ("ETH1_MASK", mask(q.prefix).to_string()),
            ("ETH1_MTU", q.guest_mtu.to_string()),
            ("NETWORK", "YES".into()),
            ("TARGET", "hda".into()),
        ] {
            cdata(&mut s, i, k, &v);
        }
        s.push_str("    </CONTEXT>\n");
        cdata(&mut s, "    ", "CPU", "1");
        cdata(&mut s, "    ", "MEMORY", "512");
        self.nic_public(&mut s);
        self.nic_private(&mut s);
        s.push_str("    <OS>\n");
        cdata(&mut s, "      ", "ARCH", "x86_64");
        s.push_str("    </OS>\n");
        for rule in ["OUTBOUND", "INBOUND"] {
            s.push_str("    <SECURITY_GROUP_RULE>\n");
            for (k, v) in [
                ("PROTOCOL", "ALL"),
                ("RULE_TYPE", rule),
                ("SECURITY_GROUP_ID", "0"),
                ("SECURITY_GROUP_NAME", "default"),
            ] {
                cdata(&mut s, "      ", k, v);
            }
            s.push_str("    </SECURITY_GROUP_RULE>\n");
        }
        cdata(&mut s, "    ", "TM_MAD_SYSTEM", "ssh");
        cdata(&mut s, "    ", "VMID", &self.id.to_string());
        s.push_str("  </TEMPLATE>\n  <USER_TEMPLATE/>\n");
        self.history(&mut s);
        s.push_str("  <BACKUPS>\n    <BACKUP_CONFIG/>\n    <BACKUP_IDS/>\n  </BACKUPS>\n</VM>\n");
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use opennebula::vm::Vm;
    use test_support::onedsim::schema;

    use super::*;

    fn stay(n: i64) -> Stay {
        Stay {
            hostname: format!("62.210.158.{n}"),
            hid: n,
            cid: 100,
        }
    }

    fn spec() -> VmSpec {
        VmSpec {
            id: 7,
            name: "vm7".into(),
            public: PublicNic {
                network_id: 0,
                network: "sandbox-public".into(),
                ar_id: 1,
                bridge: "scwpub0".into(),
                ip: Ipv4Addr::new(172, 30, 0, 4),
                mac: "02:00:ac:1e:00:04".into(),
                gateway: Ipv4Addr::new(172, 30, 0, 5),
                external_ip: Ipv4Addr::new(195, 154, 128, 3),
                fip_id: "8c2a4f6e-1b3d-4e5f-9a7b-0c1d2e3f4a5b".into(),
                zone: "fr-par-1".into(),
            },
            private: PrivateNic {
                network_id: 1,
                network: "sandbox-private-net".into(),
                ar_id: 0,
                bridge: "onebr.100".into(),
                phydev: "scwpriv0".into(),
                vlan_id: 100,
                guest_mtu: 1450,
                ip: Ipv4Addr::new(10, 200, 0, 10),
                mac: "02:00:0a:c8:00:0a".into(),
                prefix: 24,
            },
            history: vec![stay(2)],
            lcm_state: 2,
        }
    }

    fn parse(doc: &str) -> Vm {
        schema::validate(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        Vm::from_element(&opennebula::xml::parse(doc.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn documents_are_valid_and_read_as_the_drivers_read_them() {
        let vm = parse(&spec().xml());
        assert_eq!(vm.id, 7);
        let public = vm.nics_of("scaleway").unwrap();
        assert_eq!(public.len(), 1);
        let p = &public[0];
        assert_eq!(p.ip, Some(Ipv4Addr::new(172, 30, 0, 4)));
        assert_eq!(p.gateway, Some(Ipv4Addr::new(172, 30, 0, 5)));
        assert_eq!(p.external_ip.map(|a| a.to_string()).as_deref(), Some("195.154.128.3"));
        assert_eq!(p.target.as_ref().map(ToString::to_string).as_deref(), Some("one-7-0"));
        assert_eq!((p.network_id, p.ar_id), (Some(0), Some(1)));
        let private = vm.nics_of("scaleway_evpn").unwrap();
        let q = &private[0];
        assert_eq!((q.vlan_id, q.guest_mtu), (Some(100), Some(1450)));
        assert_eq!(q.bridge.as_ref().map(ToString::to_string).as_deref(), Some("onebr.100"));
        assert_eq!(q.phydev.as_ref().map(ToString::to_string).as_deref(), Some("scwpriv0"));
        assert_eq!(vm.require_current_host().unwrap().hostname.as_str(), "62.210.158.2");
    }

    #[test]
    fn after_a_migration_the_destination_is_the_current_host() {
        let mut s = spec();
        s.history.push(stay(3));
        s.lcm_state = 4;
        let vm = parse(&s.xml());
        let h = vm.require_current_host().unwrap();
        assert_eq!((h.hostname.as_str(), h.hid, h.seq), ("62.210.158.3", 3, Some(1)));
    }

    #[test]
    fn masks() {
        assert_eq!(mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(mask(31), Ipv4Addr::new(255, 255, 255, 254));
        assert_eq!(mask(0), Ipv4Addr::new(0, 0, 0, 0));
    }
}
