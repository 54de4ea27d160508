//! The VM document network drivers receive.
//!
//! For `pre`, `post`, `clean` and `update_sg` oned's VM driver sends a
//! reduced VM: `ID`, `DEPLOY_ID`, `TEMPLATE/{NIC,NIC_ALIAS,PCI}` (those with
//! a `VN_MAD`), `TEMPLATE/CONTEXT`, `TEMPLATE/SECURITY_GROUP_RULE`,
//! `USER_TEMPLATE` and the `HOSTNAME`, `HID`, `DS_ID`, `VM_MAD` of the last
//! history record (during a migration: the destination), **each element under
//! a wrapper of its own** (several `<TEMPLATE>` and `<HISTORY_RECORDS>`).
//! `update_nic` gets the whole VM. [`Vm::from_element`] reads both, over the
//! whole document as OpenNebula's own drivers do.
//!
//! NICs are kept as raw attributes; [`Vm::nics_of`] turns the NICs of one
//! driver into typed [`Nic`]s, validating every attribute a driver may use,
//! so a driver never acts on a NIC it could not fully read, and a strange
//! attribute on another driver's NIC never stops ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attr::{Attributes, DocError, HostName, IfName, MacAddr, Token, Uuid, parse_value};
use crate::xml::Element;

/// Name of the root element.
pub const ROOT: &str = "VM";

/// One history record (the host a VM is, or was, on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub seq: Option<u32>,
    pub hostname: HostName,
    pub hid: u32,
    pub cid: Option<i64>,
    pub ds_id: Option<u32>,
    pub vm_mad: Option<Token>,
    pub tm_mad: Option<Token>,
    pub action: Option<u32>,
}

impl History {
    /// The current host's record from every `HISTORY_RECORDS/HISTORY` of the
    /// document: in the reduced document each field comes in a `HISTORY` of
    /// its own; in a whole VM document the records come oldest first. Either
    /// way the last value of each field is the current host's (XPath's first
    /// match would be the oldest record of a whole document).
    fn from_records(root: &Element) -> Result<Option<Self>, DocError> {
        let mut fields: Vec<Element> = Vec::new();
        let mut records = 0;
        for h in root
            .children_named("HISTORY_RECORDS")
            .flat_map(|r| r.children_named("HISTORY"))
        {
            records += 1;
            for leaf in h.children.iter().filter(|c| c.is_leaf()) {
                fields.retain(|f| f.name != leaf.name);
                fields.push(leaf.clone());
            }
        }
        if records == 0 {
            return Ok(None);
        }
        // HISTORY holds only simple values, but we read just what we use so
        // that future additions to the record never break us.
        let leaves = Element {
            name: "HISTORY".into(),
            text: String::new(),
            children: fields,
        };
        let a = Attributes::from_element(&leaves, "VM/HISTORY_RECORDS/HISTORY")?;
        Ok(Some(Self {
            seq: a.parse("SEQ")?,
            hostname: a.require("HOSTNAME")?,
            hid: a.require("HID")?,
            cid: a.parse("CID")?,
            ds_id: a.parse("DS_ID")?,
            vm_mad: a.parse("VM_MAD")?,
            tm_mad: a.parse("TM_MAD")?,
            action: a.parse("ACTION")?,
        }))
    }
}

/// Whether a NIC is a NIC or a NIC alias (an extra address on a parent NIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicKind {
    Nic,
    Alias {
        alias_id: u32,
        parent_id: u32,
        parent: Option<Token>,
    },
}

/// A NIC or NIC alias of one driver, every attribute a driver may use typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub kind: NicKind,
    pub nic_id: u32,
    pub vn_mad: Token,
    pub network_id: Option<u32>,
    pub network: Option<String>,
    pub ar_id: Option<u32>,
    pub bridge: Option<IfName>,
    pub phydev: Option<IfName>,
    pub target: Option<IfName>,
    pub mac: Option<MacAddr>,
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub ip6_global: Option<Ipv6Addr>,
    pub ip6_ula: Option<Ipv6Addr>,
    pub ip6_link: Option<Ipv6Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub network_mask: Option<Ipv4Addr>,
    pub external_ip: Option<IpAddr>,
    pub vlan_id: Option<u32>,
    pub mtu: Option<u32>,
    pub guest_mtu: Option<u32>,
    /// `ATTACH="YES"`: the NIC being hot-attached or detached right now.
    pub attach: bool,
    pub scaleway_ip_id: Option<Uuid>,
    pub scaleway_zone: Option<Token>,
    /// Every attribute, raw, custom ones included.
    pub attrs: Attributes,
}

impl Nic {
    fn parse(raw: &RawNic) -> Result<Self, DocError> {
        let a = &raw.attrs;
        let kind = if raw.alias {
            NicKind::Alias {
                alias_id: a.require("ALIAS_ID")?,
                parent_id: a.require("PARENT_ID")?,
                parent: a.parse("PARENT")?,
            }
        } else {
            NicKind::Nic
        };
        let network = a.get("NETWORK").filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(Self {
            kind,
            nic_id: raw.nic_id,
            vn_mad: a.require("VN_MAD")?,
            network_id: a.parse("NETWORK_ID")?,
            network,
            ar_id: a.parse("AR_ID")?,
            bridge: a.parse("BRIDGE")?,
            phydev: a.parse("PHYDEV")?,
            target: a.parse("TARGET")?,
            mac: a.parse("MAC")?,
            ip: a.parse("IP")?,
            ip6: a.parse("IP6")?,
            ip6_global: a.parse("IP6_GLOBAL")?,
            ip6_ula: a.parse("IP6_ULA")?,
            ip6_link: a.parse("IP6_LINK")?,
            gateway: a.parse("GATEWAY")?,
            gateway6: a.parse("GATEWAY6")?,
            network_mask: a.parse("NETWORK_MASK")?,
            external_ip: a.parse("EXTERNAL_IP")?,
            vlan_id: a.parse("VLAN_ID")?,
            mtu: a.parse("MTU")?,
            guest_mtu: a.parse("GUEST_MTU")?,
            attach: a.parse("ATTACH")?.unwrap_or(false),
            scaleway_ip_id: a.parse("SCALEWAY_IP_ID")?,
            scaleway_zone: a.parse("SCALEWAY_ZONE")?,
            attrs: a.clone(),
        })
    }

    pub fn is_alias(&self) -> bool {
        matches!(self.kind, NicKind::Alias { .. })
    }
}

/// A NIC as found in the document: its id and raw attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawNic {
    pub alias: bool,
    pub nic_id: u32,
    pub attrs: Attributes,
}

impl RawNic {
    /// The raw `VN_MAD`, if any.
    pub fn vn_mad(&self) -> Option<&str> {
        self.attrs.get("VN_MAD")
    }
}

/// The VM as a network driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub id: u64,
    /// The hypervisor's name for the VM (`one-42`), empty before deployment.
    pub deploy_id: Option<Token>,
    pub nics: Vec<RawNic>,
    pub context: Option<Attributes>,
    pub security_group_rules: Vec<Attributes>,
    /// Kept as a tree: user templates may hold vector attributes.
    pub user_template: Option<Element>,
    /// The current host: the last history record (during a migration, the
    /// destination). oned sends network drivers only that record.
    pub host: Option<History>,
}

impl Vm {
    /// Reads a VM document (reduced or full).
    pub fn from_element(root: &Element) -> Result<Self, DocError> {
        if root.name != ROOT {
            return Err(DocError::new(
                format!("<{}>", root.name),
                format!("is not a VM document (the root element must be <{ROOT}>)"),
            ));
        }
        let id_text = root.child("ID").map(|e| e.text.as_str()).unwrap_or("");
        if id_text.is_empty() {
            return Err(DocError::missing("VM/ID"));
        }
        let id: u64 = parse_value("VM/ID", id_text)?;
        let deploy_id = match root.child("DEPLOY_ID").map(|e| e.text.as_str()) {
            None | Some("") => None,
            Some(text) => Some(parse_value("VM/DEPLOY_ID", text)?),
        };
        // oned's VM driver (`one_vmm_exec.rb`, `add_element_to_path`) gives
        // every copied element a wrapper of its own: one `<TEMPLATE>` per NIC,
        // one `<HISTORY_RECORDS><HISTORY>` per history field. OpenNebula's
        // drivers read it with XPath over the whole document; so do we.
        let template: Vec<&Element> = root
            .children_named("TEMPLATE")
            .flat_map(|t| t.children.iter())
            .collect();
        let mut nics = Vec::new();
        let mut position = 0;
        for e in &template {
            let alias = match e.name.as_str() {
                "NIC" => false,
                "NIC_ALIAS" => true,
                _ => continue,
            };
            position += 1;
            let path = format!("VM/TEMPLATE/{}#{position}", e.name);
            let mut attrs = Attributes::from_element(e, &path)?;
            let nic_id: u32 = attrs.require("NIC_ID")?;
            attrs.set_path(format!("VM/TEMPLATE/{}[NIC_ID={nic_id}]", e.name));
            if nics.iter().any(|n: &RawNic| n.nic_id == nic_id) {
                return Err(DocError::new(
                    attrs.path(),
                    "uses a NIC_ID that another NIC already has",
                ));
            }
            nics.push(RawNic { alias, nic_id, attrs });
        }
        let context = match template.iter().find(|e| e.name == "CONTEXT") {
            Some(c) => Some(Attributes::from_element(c, "VM/TEMPLATE/CONTEXT")?),
            None => None,
        };
        let mut security_group_rules = Vec::new();
        for (i, rule) in template.iter().filter(|e| e.name == "SECURITY_GROUP_RULE").enumerate() {
            security_group_rules.push(Attributes::from_element(
                rule,
                &format!("VM/TEMPLATE/SECURITY_GROUP_RULE#{}", i + 1),
            )?);
        }
        let host = History::from_records(root)?;
        Ok(Self {
            id,
            deploy_id,
            nics,
            context,
            security_group_rules,
            user_template: root.child("USER_TEMPLATE").cloned(),
            host,
        })
    }

    /// The current host's record (the last one; during a migration, the
    /// destination).
    pub fn current_host(&self) -> Option<&History> {
        self.host.as_ref()
    }

    /// The current host's record, as an error if there is none.
    pub fn require_current_host(&self) -> Result<&History, DocError> {
        self.current_host()
            .ok_or_else(|| DocError::missing("VM/HISTORY_RECORDS/HISTORY"))
    }

    /// Every NIC and NIC alias whose `VN_MAD` is `vn_mad`, typed and
    /// validated, in document order. One bad attribute fails the whole call.
    pub fn nics_of(&self, vn_mad: &str) -> Result<Vec<Nic>, DocError> {
        self.nics
            .iter()
            .filter(|n| n.vn_mad() == Some(vn_mad))
            .map(Nic::parse)
            .collect()
    }

    /// Whether a NIC of any driver is being hot-attached or detached
    /// (`ATTACH="YES"`): then an action concerns that NIC only.
    pub fn is_hotplug(&self) -> bool {
        self.nics
            .iter()
            .any(|n| n.attrs.get("ATTACH").is_some_and(|v| v.eq_ignore_ascii_case("yes")))
    }

    /// The NICs of `vn_mad` an action must touch: all of them, or during a
    /// hot attach/detach only the NICs being attached and their aliases.
    pub fn touched_nics_of(&self, vn_mad: &str) -> Result<Vec<Nic>, DocError> {
        let nics = self.nics_of(vn_mad)?;
        if !self.is_hotplug() {
            return Ok(nics);
        }
        let attached: Vec<u32> = nics.iter().filter(|n| n.attach).map(|n| n.nic_id).collect();
        Ok(nics
            .into_iter()
            .filter(|n| n.attach || matches!(n.kind, NicKind::Alias { parent_id, .. } if attached.contains(&parent_id)))
            .collect())
    }

    /// A user template value, if it is a simple attribute.
    pub fn user_attribute(&self, name: &str) -> Option<&str> {
        self.user_template
            .as_ref()?
            .child(name)
            .filter(|e| e.is_leaf())
            .map(|e| e.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    fn vm(doc: &str) -> Result<Vm, DocError> {
        Vm::from_element(&xml::parse(doc.as_bytes()).unwrap())
    }

    const HISTORY: &str = "<HISTORY_RECORDS><HISTORY><HOSTNAME>node1</HOSTNAME><HID>0</HID></HISTORY>\
                           <HISTORY><SEQ>1</SEQ><HOSTNAME>node2</HOSTNAME><HID>1</HID></HISTORY></HISTORY_RECORDS>";

    #[test]
    fn reads_nics_aliases_and_history() {
        let doc = format!(
            "<VM><ID>5</ID><DEPLOY_ID>one-5</DEPLOY_ID><TEMPLATE>\
             <NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><IP>172.16.0.2</IP><BRIDGE>br0</BRIDGE><ATTACH>YES</ATTACH></NIC>\
             <NIC><NIC_ID>1</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD><VLAN_ID>100</VLAN_ID></NIC>\
             <NIC_ALIAS><NIC_ID>2</NIC_ID><ALIAS_ID>0</ALIAS_ID><PARENT>NIC0</PARENT><PARENT_ID>0</PARENT_ID><VN_MAD>scaleway</VN_MAD></NIC_ALIAS>\
             <CONTEXT><NETWORK>YES</NETWORK></CONTEXT></TEMPLATE>\
             <USER_TEMPLATE><SCALEWAY_PROFILE>edge</SCALEWAY_PROFILE></USER_TEMPLATE>{HISTORY}</VM>"
        );
        let vm = vm(&doc).unwrap();
        assert_eq!(vm.id, 5);
        assert_eq!(vm.deploy_id.as_ref().map(Token::as_str), Some("one-5"));
        assert_eq!(vm.current_host().unwrap().hostname.as_str(), "node2");
        let public = vm.nics_of("scaleway").unwrap();
        assert_eq!(public.len(), 2);
        assert!(public[0].attach);
        assert_eq!(
            public[1].kind,
            NicKind::Alias {
                alias_id: 0,
                parent_id: 0,
                parent: Some("NIC0".parse().unwrap())
            }
        );
        assert_eq!(vm.nics_of("scaleway_evpn").unwrap()[0].vlan_id, Some(100));
        assert_eq!(vm.context.as_ref().unwrap().get("NETWORK"), Some("YES"));
        assert_eq!(vm.user_attribute("SCALEWAY_PROFILE"), Some("edge"));
    }

    /// The shape oned's VM driver really sends (`one_vmm_exec.rb`): one
    /// wrapper per copied element.
    #[test]
    fn reads_the_reduced_document_with_a_wrapper_per_element() {
        let doc = "<VM><ID>7</ID><DEPLOY_ID>one-7</DEPLOY_ID>\
             <TEMPLATE><CONTEXT><NETWORK>YES</NETWORK></CONTEXT></TEMPLATE>\
             <USER_TEMPLATE><X>1</X></USER_TEMPLATE>\
             <TEMPLATE><SECURITY_GROUP_RULE><PROTOCOL>ALL</PROTOCOL></SECURITY_GROUP_RULE></TEMPLATE>\
             <HISTORY_RECORDS><HISTORY><HOSTNAME>node2</HOSTNAME></HISTORY></HISTORY_RECORDS>\
             <HISTORY_RECORDS><HISTORY><HID>3</HID></HISTORY></HISTORY_RECORDS>\
             <HISTORY_RECORDS><HISTORY><DS_ID>0</DS_ID></HISTORY></HISTORY_RECORDS>\
             <HISTORY_RECORDS><HISTORY><VM_MAD>kvm</VM_MAD></HISTORY></HISTORY_RECORDS>\
             <TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD></NIC></TEMPLATE>\
             <TEMPLATE><NIC><NIC_ID>1</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD></NIC></TEMPLATE>\
             <TEMPLATE><NIC_ALIAS><NIC_ID>2</NIC_ID><ALIAS_ID>0</ALIAS_ID><PARENT_ID>0</PARENT_ID><VN_MAD>scaleway</VN_MAD></NIC_ALIAS></TEMPLATE></VM>";
        let vm = vm(doc).unwrap();
        let host = vm.require_current_host().unwrap();
        assert_eq!((host.hostname.as_str(), host.hid, host.ds_id), ("node2", 3, Some(0)));
        assert_eq!(host.vm_mad.as_ref().map(Token::as_str), Some("kvm"));
        assert_eq!(vm.nics_of("scaleway").unwrap().len(), 2);
        assert_eq!(vm.nics_of("scaleway_evpn").unwrap().len(), 1);
        assert_eq!(vm.security_group_rules.len(), 1);
        assert_eq!(vm.context.as_ref().unwrap().get("NETWORK"), Some("YES"));
        // NIC ids stay unique across wrappers.
        let twice = "<VM><ID>1</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID></NIC></TEMPLATE>\
                     <TEMPLATE><NIC><NIC_ID>0</NIC_ID></NIC></TEMPLATE></VM>";
        assert!(vm_err(twice).contains("uses a NIC_ID that another NIC already has"));
    }

    fn vm_err(doc: &str) -> String {
        vm(doc).unwrap_err().to_string()
    }

    #[test]
    fn other_drivers_nics_do_not_matter() {
        let doc = "<VM><ID>1</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>bridge</VN_MAD><BRIDGE>not valid!</BRIDGE></NIC></TEMPLATE></VM>";
        let vm = vm(doc).unwrap();
        assert!(vm.nics_of("scaleway").unwrap().is_empty());
        assert!(vm.nics_of("bridge").unwrap_err().to_string().contains("BRIDGE"));
    }

    #[test]
    fn errors_name_the_nic_and_attribute() {
        let nic = |body: &str| format!("<VM><ID>1</ID><TEMPLATE><NIC>{body}</NIC></TEMPLATE></VM>");
        let cases = [
            ("<VM/>".to_owned(), "VM/ID is missing"),
            ("<VM><ID>x</ID></VM>".to_owned(), r#"VM/ID = "x" is not a non-negative whole number"#),
            ("<HOST><ID>1</ID></HOST>".to_owned(), "<HOST> is not a VM document"),
            ("<VM><ID>1</ID><DEPLOY_ID>one-1;reboot</DEPLOY_ID></VM>".to_owned(), "VM/DEPLOY_ID"),
            (nic("<VN_MAD>scaleway</VN_MAD>"), "VM/TEMPLATE/NIC#1/NIC_ID is missing"),
            (nic("<NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><IP>1.2.3</IP>"), r#"VM/TEMPLATE/NIC[NIC_ID=0]/IP = "1.2.3" is not an IPv4 address"#),
            (nic("<NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><GATEWAY>$(reboot)</GATEWAY>"), "NIC[NIC_ID=0]/GATEWAY"),
            (nic("<NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><EXTERNAL_IP>51.15.0.1 -j ACCEPT</EXTERNAL_IP>"), "EXTERNAL_IP"),
            (nic("<NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><SCALEWAY_IP_ID>../../x</SCALEWAY_IP_ID>"), "is not a UUID"),
            (
                "<VM><ID>1</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID></NIC><NIC><NIC_ID>0</NIC_ID></NIC></TEMPLATE></VM>".to_owned(),
                "NIC[NIC_ID=0] uses a NIC_ID that another NIC already has",
            ),
            (
                "<VM><ID>1</ID><TEMPLATE><NIC_ALIAS><NIC_ID>1</NIC_ID><VN_MAD>scaleway</VN_MAD></NIC_ALIAS></TEMPLATE></VM>".to_owned(),
                "NIC_ALIAS[NIC_ID=1]/ALIAS_ID is missing",
            ),
            (
                "<VM><ID>1</ID><HISTORY_RECORDS><HISTORY><HOSTNAME>-oProxyCommand=id</HOSTNAME><HID>0</HID></HISTORY></HISTORY_RECORDS></VM>".to_owned(),
                "VM/HISTORY_RECORDS/HISTORY/HOSTNAME",
            ),
        ];
        for (doc, expected) in cases {
            let err = vm(&doc)
                .and_then(|v| v.nics_of("scaleway").map(drop))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{doc}: {err:?} should contain {expected:?}");
        }
    }
}
