//! `create --dry-run`: what `create` would do, from the description alone
//! (pure: no Scaleway or oned call), as text.

use anyhow::Result;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::bootstrap::{self, HostFacts};
use crate::cloud;
use crate::description::Description;
use crate::one;
use crate::ops::{BootstrapOptions, cluster_facts};
use crate::state::{HostRecord, ProvisionState};

/// The plan of a new provision. `s` carries the id the provision would get.
pub fn render(d: &Description, s: &ProvisionState, boot: &BootstrapOptions) -> Result<String> {
    let mut out = String::new();
    let tags = cloud::tags(&s.id).join(", ");
    let _ = writeln!(
        out,
        "Plan for provision {} (id {}) in {} ({}); nothing is created by --dry-run.\n",
        d.name, s.id, d.zone, d.region
    );
    let _ = writeln!(out, "Scaleway, every resource tagged {tags}:");
    let _ = writeln!(
        out,
        "  1. SSH keys: the frontend's {} public key(s), named {}-N unless the project has them",
        boot.authorized_keys.len(),
        format_args!("one-scaleway-{}", s.id)
    );
    let _ = writeln!(out, "  2. VPC {} (routing on), region {}", d.name, d.region);
    let _ = writeln!(out, "  3. private network {} with subnet {}", d.name, d.private_cidr);
    let _ = writeln!(
        out,
        "  4. public gateway {} (VPC-GW-S, bastion on) connected to the private network, default route pushed",
        d.name
    );
    let _ = writeln!(
        out,
        "  5. {} Elastic Metal server(s) {} ({}), {} {}, Private Network option, attached to the private network \
         (in parallel, with step 4)",
        d.hosts,
        d.offer,
        d.period.as_str(),
        d.os.0,
        d.os.1
    );
    for i in 1..=d.hosts {
        let _ = writeln!(
            out,
            "       {}-host{i}  tags +{} +{}",
            d.name,
            cloud::token(&s.id, &format!("host{i}")),
            cloud::host_tag(&format!("{}-host{i}", d.name))
        );
    }
    let _ = writeln!(out, "\nOpenNebula (oned XML-RPC):");
    let _ = writeln!(out, "  cluster {}", d.cluster_name);
    let _ = writeln!(
        out,
        "  {} host(s) named by their public address, IM_MAD/VM_MAD {}, with:",
        d.hosts,
        one::drivers(d)
    );
    let mut example = s.clone();
    example.hosts = (1..=d.hosts)
        .map(|i| HostRecord {
            index: i,
            name: format!("{}-host{i}", d.name),
            server_id: Some("<server id>".into()),
            public_ip: Some(Ipv4Addr::new(192, 0, 2, u8::try_from(i).unwrap_or(1))),
            private_ip: d.private_cidr.nth(1 + i),
            ..HostRecord::default()
        })
        .collect();
    let indent = |t: String| -> String { t.lines().map(|l| format!("    {l}\n")).collect() };
    if let Some(h) = example.hosts.first() {
        out.push_str(&indent(one::text(&one::host_template(d, &example, h))?));
    }
    for (what, t) in [
        ("image datastore", one::image_datastore(d, &example)),
        ("system datastore", one::system_datastore(d, &example)),
        ("public network", one::public_network(d, &example)),
    ] {
        let _ = writeln!(out, "  {what}:");
        out.push_str(&indent(one::text(&t)?));
    }
    let _ = writeln!(
        out,
        "  {} public address range(s), each one flexible IP registered by the scaleway IPAM driver:",
        d.public_ips
    );
    out.push_str(&indent(one::text(&one::public_range(d, &example))?));
    let _ = writeln!(out, "  private network template:");
    out.push_str(&indent(one::text(&one::private_template(d, &example))?));
    let _ = writeln!(
        out,
        "\nHost bootstrap over SSH as {} (example addresses; Scaleway assigns the real ones):",
        boot.ssh_user
    );
    let cluster = cluster_facts(d, &example, boot)?;
    if let Some(first) = cluster.hosts.first() {
        let host = HostFacts {
            uplink: Some("<default route device>".into()),
            vlan: None,
            ..first.clone()
        };
        out.push_str(&bootstrap::render(
            &host,
            &bootstrap::plan(&cluster, &host, true),
            &boot.ssh_user,
        ));
        if cluster.hosts.len() > 1 {
            let _ = writeln!(out, "  (the same on every host, in parallel)");
        }
    }
    Ok(out)
}
