//! The templates of a provision's OpenNebula objects (pure, golden-tested).

use anyhow::{Error, Result};
use opennebula::template::Template;

use crate::description::{Description, Hypervisor};
use crate::state::{HostRecord, ProvisionState};

/// The bridge of the public network on every host.
pub const PUBLIC_BRIDGE: &str = "scwpub0";
/// The VMs' private network template's default range.
pub const PRIVATE_VNET_FIRST: &str = "10.200.0.10";
pub const PRIVATE_VNET_SIZE: &str = "240";

/// Names of the provision's OpenNebula objects.
pub fn image_datastore_name(d: &Description) -> String {
    format!("{}-image", d.name)
}
pub fn system_datastore_name(d: &Description) -> String {
    format!("{}-system", d.name)
}
pub fn public_network_name(d: &Description) -> String {
    format!("{}-public", d.name)
}
pub fn private_template_name(d: &Description) -> String {
    format!("{}-private", d.name)
}

/// `IM_MAD`/`VM_MAD` of the hosts.
pub fn drivers(d: &Description) -> &'static str {
    match d.hypervisor {
        Hypervisor::Kvm => "kvm",
        Hypervisor::Lxc => "lxc",
    }
}

fn provision_vector(s: &ProvisionState) -> Vec<(&'static str, String)> {
    vec![("ID", s.id.clone()), ("NAME", s.name.clone())]
}

/// What is added to a host's template.
pub fn host_template(d: &Description, s: &ProvisionState, h: &HostRecord) -> Template {
    let mut pairs = vec![
        (
            "DEPLOY_ID",
            format!("{}/{}", d.zone, h.server_id.clone().unwrap_or_default()),
        ),
        ("ID", s.id.clone()),
        ("NAME", s.name.clone()),
        ("HOSTNAME", h.name.clone()),
        ("PRIVATE_IP", h.private_ip.map(|i| i.to_string()).unwrap_or_default()),
        ("SCALEWAY_ZONE", d.zone.to_string()),
    ];
    if let Some(p) = &d.profile {
        pairs.push(("SCALEWAY_PROFILE", p.clone()));
    }
    let mut t = Template::new();
    t.vector("PROVISION", pairs);
    t
}

/// The cluster's template additions.
pub fn cluster_template(s: &ProvisionState) -> Template {
    let mut t = Template::new();
    t.vector("PROVISION", provision_vector(s));
    t
}

/// The image datastore: files copied to the hosts over SSH.
pub fn image_datastore(d: &Description, s: &ProvisionState) -> Template {
    let mut t = Template::new();
    t.single("NAME", &image_datastore_name(d))
        .single("TYPE", "IMAGE_DS")
        .single("DS_MAD", "fs")
        .single("TM_MAD", "ssh")
        .single("SAFE_DIRS", "/var/tmp")
        .vector("PROVISION", provision_vector(s));
    t
}

/// The system datastore: SSH transfer, the first host keeps a replica of the images.
pub fn system_datastore(d: &Description, s: &ProvisionState) -> Template {
    let mut t = Template::new();
    t.single("NAME", &system_datastore_name(d))
        .single("TYPE", "SYSTEM_DS")
        .single("TM_MAD", "ssh");
    if let Some(first) = s.hosts.iter().find_map(|h| h.public_ip) {
        t.single("REPLICA_HOST", &first.to_string());
    }
    t.vector("PROVISION", provision_vector(s));
    t
}

/// The public network, without ranges (they are added one by one).
pub fn public_network(d: &Description, s: &ProvisionState) -> Template {
    let dns: Vec<String> = d.dns.iter().map(ToString::to_string).collect();
    let mut t = Template::new();
    t.single("NAME", &public_network_name(d))
        .single("DESCRIPTION", &format!("Scaleway flexible IPs of provision {}", d.name))
        .single("VN_MAD", "scaleway")
        .single("BRIDGE", PUBLIC_BRIDGE)
        .single("DNS", &dns.join(" "))
        .vector("PROVISION", provision_vector(s));
    t
}

/// One public range: one flexible IP, registered by the `scaleway_fip` IPAM driver.
pub fn public_range(d: &Description, s: &ProvisionState) -> Template {
    let mut pairs = vec![
        ("IPAM_MAD", crate::oneconf::IPAM_DRIVER.to_owned()),
        ("SIZE", "1".to_owned()),
        ("PRIVATE_CIDR", d.public_ip_cidr.to_string()),
        ("SCALEWAY_ZONE", d.zone.to_string()),
        ("SCALEWAY_PROVISION", s.id.clone()),
    ];
    if let Some(p) = &d.profile {
        pairs.push(("SCALEWAY_PROFILE", p.clone()));
    }
    let mut t = Template::new();
    t.vector("AR", pairs);
    t
}

/// The private network template (VXLAN with BGP-EVPN between the hosts).
pub fn private_template(d: &Description, s: &ProvisionState) -> Template {
    let dns: Vec<String> = d.dns.iter().map(ToString::to_string).collect();
    let mut t = Template::new();
    t.single("NAME", &private_template_name(d))
        .single(
            "DESCRIPTION",
            &format!("Private network between the VMs of provision {}", d.name),
        )
        .single("VN_MAD", "scaleway_evpn")
        .single("PHYDEV", crate::bootstrap::PRIVATE_DEVICE)
        .single("GUEST_MTU", "1450")
        .single("DNS", &dns.join(" "))
        .single("NETWORK_ADDRESS", "10.200.0.0")
        .single("NETWORK_MASK", "255.255.255.0")
        .vector(
            "AR",
            [("TYPE", "IP4"), ("IP", PRIVATE_VNET_FIRST), ("SIZE", PRIVATE_VNET_SIZE)],
        );
    if let Some(c) = s.one.cluster {
        t.single("CLUSTER_IDS", &c.to_string());
    }
    t.vector("PROVISION", provision_vector(s));
    t
}

/// Renders a template, or says which value cannot be written.
pub fn text(t: &Template) -> Result<String> {
    t.render().map_err(Error::msg)
}
