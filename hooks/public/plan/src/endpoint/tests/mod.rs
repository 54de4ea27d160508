use super::*;
use opennebula::xml;

fn vm(nics: &str) -> Vm {
    let doc = format!("<VM><ID>7</ID><TEMPLATE>{nics}</TEMPLATE></VM>");
    Vm::from_element(&xml::parse(doc.as_bytes()).unwrap()).unwrap()
}

fn nic(id: u32, extra: &str) -> String {
    format!(
        "<NIC><NIC_ID>{id}</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-7-{id}</TARGET><MAC>02:00:ac:1e:00:{id:02x}</MAC>{extra}</NIC>"
    )
}

const GOOD: &str = "<IP>172.30.0.4</IP><GATEWAY>172.30.0.5</GATEWAY><EXTERNAL_IP>51.15.0.1</EXTERNAL_IP>";

#[test]
fn reads_an_ipv4_nic() {
    let s = select(&vm(&nic(0, GOOD))).unwrap();
    assert!(!s.hotplug);
    assert_eq!(s.endpoints.len(), 1);
    assert_eq!(
        s.endpoints[0].to_string(),
        "VM 7 NIC 0: 51.15.0.1 <-> 172.30.0.4 (gateway 172.30.0.5) on scwpub0"
    );
}

#[test]
fn reads_an_ipv6_nic() {
    let s = select(&vm(&nic(
        0,
        "<IP6>2001:db8:1:2::2</IP6><GATEWAY6>2001:db8:1:2::1</GATEWAY6><EXTERNAL_IP>2001:db8:1:2::</EXTERNAL_IP>",
    )))
    .unwrap();
    assert_eq!(
        s.endpoints[0].to_string(),
        "VM 7 NIC 0: 2001:db8:1:2::/64 -> 2001:db8:1:2::2 (gateway 2001:db8:1:2::1) on scwpub0"
    );
}

#[test]
fn refuses_nics_that_do_not_fit() {
    let cases = [
        (
            "<IP>172.30.0.4</IP><GATEWAY>172.30.0.5</GATEWAY>",
            "NIC[NIC_ID=0]/EXTERNAL_IP is missing",
        ),
        (
            "<IP>172.30.0.4</IP><GATEWAY>172.30.0.5</GATEWAY><EXTERNAL_IP>2001:db8::1</EXTERNAL_IP>",
            "EXTERNAL_IP = 2001:db8::1 is an IPv6 address, but the NIC's IP 172.30.0.4 is IPv4",
        ),
        (
            "<IP>172.30.0.4</IP><GATEWAY>172.30.0.7</GATEWAY><EXTERNAL_IP>51.15.0.1</EXTERNAL_IP>",
            "GATEWAY = 172.30.0.7 is not the other address of IP 172.30.0.4's /31 (172.30.0.5)",
        ),
        (
            "<IP>172.30.0.4</IP><EXTERNAL_IP>51.15.0.1</EXTERNAL_IP>",
            "GATEWAY is missing",
        ),
        (
            "<IP>172.30.0.4</IP><GATEWAY>172.30.0.5</GATEWAY><EXTERNAL_IP>224.0.0.1</EXTERNAL_IP>",
            "EXTERNAL_IP = 224.0.0.1 is a multicast address",
        ),
        (
            "<IP>127.0.0.4</IP><GATEWAY>127.0.0.5</GATEWAY><EXTERNAL_IP>51.15.0.1</EXTERNAL_IP>",
            "IP = 127.0.0.4 is a loopback address",
        ),
        (
            "<GATEWAY>172.30.0.5</GATEWAY>",
            "NIC[NIC_ID=0]/IP is missing (and so is IP6)",
        ),
        (
            "<IP>172.30.0.4</IP><IP6>2001:db8::2</IP6>",
            "IP6 is set together with IP",
        ),
        (
            "<IP6>2001:db8::2</IP6><GATEWAY6>2001:db8::1</GATEWAY6><EXTERNAL_IP>51.15.0.1</EXTERNAL_IP>",
            "EXTERNAL_IP = 51.15.0.1 is an IPv4 address, but the NIC's IP6 2001:db8::2 is IPv6",
        ),
        (
            "<IP6>2001:db8::2</IP6><EXTERNAL_IP>2001:db8::</EXTERNAL_IP>",
            "GATEWAY6 is missing",
        ),
    ];
    for (attrs, expected) in cases {
        let err = select(&vm(&nic(0, attrs))).unwrap_err().to_string();
        assert!(err.contains(expected), "{attrs}: {err:?} should contain {expected:?}");
    }
    let no_bridge = "<NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><IP>172.30.0.4</IP></NIC>";
    let err = select(&vm(no_bridge)).unwrap_err().to_string();
    assert!(err.contains("NIC[NIC_ID=0]/BRIDGE is missing"), "{err}");
}

#[test]
fn hotplug_selects_the_attached_nic_and_its_aliases_only() {
    let alias = "<NIC_ALIAS><NIC_ID>2</NIC_ID><ALIAS_ID>0</ALIAS_ID><PARENT_ID>1</PARENT_ID><VN_MAD>scaleway</VN_MAD>\
                 <BRIDGE>scwpub0</BRIDGE><IP>172.30.0.8</IP><GATEWAY>172.30.0.9</GATEWAY><EXTERNAL_IP>51.15.0.3</EXTERNAL_IP></NIC_ALIAS>";
    let attached = nic(
        1,
        "<ATTACH>YES</ATTACH><IP>172.30.0.6</IP><GATEWAY>172.30.0.7</GATEWAY><EXTERNAL_IP>51.15.0.2</EXTERNAL_IP>",
    );
    let s = select(&vm(&format!("{}{attached}{alias}", nic(0, GOOD)))).unwrap();
    assert!(s.hotplug);
    let ids: Vec<u32> = s.endpoints.iter().map(|e| e.owner.nic_id).collect();
    assert_eq!(ids, [1, 2]);
    // Another driver's NIC being attached: none of ours is touched.
    let other = "<NIC><NIC_ID>5</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD><ATTACH>YES</ATTACH></NIC>";
    let s = select(&vm(&format!("{}{other}", nic(0, GOOD)))).unwrap();
    assert!(s.hotplug);
    assert!(s.endpoints.is_empty());
}

#[test]
fn bridge_names_round_trip() {
    let b = BridgeName::parse("onebr.100").unwrap();
    assert_eq!(b.as_str(), "onebr.100");
    assert!(BridgeName::parse("a b").is_err());
    assert!(BridgeName::parse("sixteen-bytes-xx").is_err());
}
