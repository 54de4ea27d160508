use super::*;

fn br(name: &str) -> BridgeName {
    BridgeName::parse(name).unwrap()
}

#[test]
fn sysctl_keys_read_like_sysctl() {
    let k = SysctlKey::ipv4_forwarding(br("onebr.100"));
    assert_eq!(k.path(), "net/ipv4/conf/onebr.100/forwarding");
    assert_eq!(k.to_string(), "net.ipv4.conf.onebr/100.forwarding");
    assert!(k.is_of_device(br("onebr.100")));
    assert!(!SysctlKey::ip_forward().is_of_device(br("onebr.100")));
}

#[test]
fn ip_commands() {
    let dev = br("scwpub0");
    let r = Route {
        dst: "172.30.0.4".parse().unwrap(),
        len: 32,
        via: None,
        dev,
    };
    assert_eq!(IpOp::AddRoute(r).to_string(), "route add 172.30.0.4/32 dev scwpub0");
    assert_eq!(IpOp::AddRoute(r).undo(), Some(IpOp::DeleteRoute(r)));
    let p = Proxy {
        addr: "2001:db8::1".parse().unwrap(),
        dev,
    };
    assert_eq!(
        IpOp::DeleteProxy(p).to_string(),
        "neigh del proxy 2001:db8::1 dev scwpub0"
    );
    let mac = bridge_mac(dev);
    assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
    assert_eq!(mac, bridge_mac(br("scwpub0")));
    assert_ne!(mac, bridge_mac(br("scwpub1")));
    assert!(
        IpOp::AddBridge { name: dev, mac }
            .to_string()
            .starts_with("link add name scwpub0 address 02:5c:")
    );
}
