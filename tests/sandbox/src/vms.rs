//! VMs as oned and libvirt would handle them: leases from oned, the
//! network drivers' actions where oned runs them (`pre` on the host, the
//! public driver's `post`/`clean` on the frontend, the private driver's on
//! the host), and "libvirt": a VM is a namespace whose NICs are veths, the
//! host end (`one-<vm>-<nic>`, the NIC's TARGET) on the NIC's bridge.
//! A live migration moves the host ends to the destination's bridges
//! between `pre` there and `post`; the VM's namespace (its processes and
//! sockets) stays, as a migrated VM keeps running.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, anyhow, bail};
use opennebula::oned::Param;
use test_support::onedsim::schema;

use crate::ctl::ip;
use crate::netns::{PORT, Service};
use crate::sandbox::{HostInfo, Sandbox, VmState};
use crate::vmdoc::{PrivateNic, PublicNic, Stay, VmSpec, target};

/// Where `onehost sync` puts the drivers on a host.
pub const REMOTE_DIR: &str = "/var/tmp/one";
/// The private network's VNI (its `VLAN_ID`).
pub const VNI: u32 = 100;
/// oned's LCM states used in the documents.
pub const LCM_BOOT: u32 = 2;
pub const LCM_MIGRATE: u32 = 4;
pub const LCM_SHUTDOWN: u32 = 12;

fn parse_ip(s: Option<&String>, what: &str) -> anyhow::Result<Ipv4Addr> {
    s.context(format!("no {what}"))?
        .parse()
        .with_context(|| format!("{what} is not an IPv4 address"))
}

impl Sandbox {
    pub fn host(&self, index: usize) -> anyhow::Result<&HostInfo> {
        self.cluster
            .hosts
            .get(index)
            .with_context(|| format!("no host {index}"))
    }

    fn stay(&self, index: usize) -> anyhow::Result<Stay> {
        let h = self.host(index)?;
        Ok(Stay {
            hostname: h.public_ip.to_string(),
            hid: h.one_id,
            cid: self.cluster.cluster_id,
        })
    }

    /// `ssh oneadmin@<host> /var/tmp/one/vnm/<driver>/<action> ARGS`, the
    /// document (checked against vm.xsd) in base64 on stdin.
    pub fn host_action(&self, host: usize, driver: &str, action: &str, args: &[&str], doc: &str) -> anyhow::Result<()> {
        schema::validate(doc).map_err(|e| anyhow!("the VM document is not valid against vm.xsd: {e}"))?;
        let h = self.host(host)?;
        let program = format!("{REMOTE_DIR}/vnm/{driver}/{action}");
        let stdin = opennebula::base64::encode(doc.as_bytes());
        let ran = self.on_host_as("oneadmin", h, &program, args, stdin.as_bytes())?;
        if !ran.ok() {
            bail!(
                "{driver}/{action} on {} ({}) failed: {}",
                h.name,
                h.public_ip,
                ran.complaint()
            );
        }
        Ok(())
    }

    /// `$ONE_LOCATION/var/remotes/vnm/<driver>/<action> ARGS` on the
    /// frontend (the public driver's `post` and `clean` are in
    /// VNMAD_LOCAL_ACTIONS).
    pub fn local_action(&self, driver: &str, action: &str, args: &[&str], doc: &str) -> anyhow::Result<()> {
        schema::validate(doc).map_err(|e| anyhow!("the VM document is not valid against vm.xsd: {e}"))?;
        let program = self.paths.remotes.join("vnm").join(driver).join(action);
        let mut cmd = self.frontend_command(&program)?;
        cmd.args(args);
        let stdin = opennebula::base64::encode(doc.as_bytes());
        let ran = self
            .ctl
            .run(&mut cmd, stdin.as_bytes(), std::time::Duration::from_secs(300))?;
        if !ran.ok() {
            bail!("{driver}/{action} on the frontend failed: {}", ran.complaint());
        }
        Ok(())
    }

    /// oned's leases and the VM's document for a first deployment.
    fn lease(&self, vm_id: u64, host: usize, public_ar: i64) -> anyhow::Result<VmSpec> {
        let oned = self.oned()?;
        let private_vnet = self.private_vnet.context("no private network")?;
        let vnets = oned.vnets();
        let public = vnets
            .iter()
            .find(|v| v.id == self.cluster.public_vnet)
            .context("the public network is gone")?;
        let ar = public
            .ars
            .iter()
            .find(|a| a.id == public_ar)
            .with_context(|| format!("no address range {public_ar} in the public network"))?;
        let private = vnets
            .iter()
            .find(|v| v.id == private_vnet)
            .context("the private network is gone")?;
        let pub_lease = oned
            .lease(public.id, public_ar, i64::try_from(vm_id)?)
            .map_err(|e| anyhow!("oned: leasing range {public_ar} of {}: {e}", public.name))?;
        let priv_lease = oned
            .lease(private.id, 0, i64::try_from(vm_id)?)
            .map_err(|e| anyhow!("oned: leasing from {}: {e}", private.name))?;
        let attr = |k: &str| ar.attrs.get(k);
        let guest_mtu = private
            .template
            .attributes
            .iter()
            .find_map(|(k, v)| match v {
                opennebula::template::Value::Single(m) if k == "GUEST_MTU" => m.parse().ok(),
                _ => None,
            })
            .context("the private network has no GUEST_MTU")?;
        Ok(VmSpec {
            id: vm_id,
            name: format!("vm{vm_id}"),
            public: PublicNic {
                network_id: public.id,
                network: public.name.clone(),
                ar_id: public_ar,
                bridge: public.bridge.clone(),
                ip: parse_ip(pub_lease.ip.as_ref(), "public lease IP")?,
                mac: pub_lease.mac,
                gateway: parse_ip(attr("GATEWAY"), "GATEWAY of the public range")?,
                external_ip: parse_ip(attr("EXTERNAL_IP"), "EXTERNAL_IP of the public range")?,
                fip_id: attr("SCALEWAY_IP_ID").cloned().context("no SCALEWAY_IP_ID")?,
                zone: attr("SCALEWAY_ZONE")
                    .cloned()
                    .unwrap_or_else(|| crate::sandbox::ZONE.into()),
            },
            private: PrivateNic {
                network_id: private.id,
                network: private.name.clone(),
                ar_id: 0,
                bridge: private.bridge.clone(),
                phydev: "scwpriv0".into(),
                vlan_id: VNI,
                guest_mtu,
                ip: parse_ip(priv_lease.ip.as_ref(), "private lease IP")?,
                mac: priv_lease.mac,
                prefix: 24,
            },
            history: vec![self.stay(host)?],
            lcm_state: LCM_BOOT,
        })
    }

    /// The VM's NICs plugged as libvirt plugs them: `eth0` (public, /31,
    /// default route to GATEWAY) and `eth1` (private, GUEST_MTU) in the
    /// VM, their host ends on the NICs' bridges.
    fn plug(&self, spec: &VmSpec, ns: &str, host: usize) -> anyhow::Result<()> {
        let h = self.host(host)?.namespace.clone();
        let c = &self.ctl;
        let nics = [
            (
                "eth0",
                target(spec.id, 0),
                &spec.public.bridge,
                &spec.public.mac,
                1500,
                format!("{}/31", spec.public.ip),
            ),
            (
                "eth1",
                target(spec.id, 1),
                &spec.private.bridge,
                &spec.private.mac,
                spec.private.guest_mtu,
                format!("{}/{}", spec.private.ip, spec.private.prefix),
            ),
        ];
        for (inside, tap, bridge, mac, mtu, addr) in nics {
            let mtu = mtu.to_string();
            ip(
                c,
                &["-n", ns, "link", "add", inside, "type", "veth", "peer", "name", &tap],
            )?;
            ip(c, &["-n", ns, "link", "set", &tap, "netns", &h])?;
            ip(c, &["-n", &h, "link", "set", &tap, "mtu", &mtu, "master", bridge, "up"])?;
            ip(c, &["-n", ns, "link", "set", inside, "address", mac, "mtu", &mtu, "up"])?;
            ip(c, &["-n", ns, "addr", "add", &addr, "dev", inside, "nodad"])?;
        }
        let gw = spec.public.gateway.to_string();
        ip(c, &["-n", ns, "route", "add", "default", "via", &gw, "dev", "eth0"])?;
        Ok(())
    }

    /// Deploys VM `vm_id` on host `host` with public range `public_ar`:
    /// what oned does (leases, `pre`, boot, `post`).
    pub fn deploy(&mut self, vm_id: u64, host: usize, public_ar: i64) -> anyhow::Result<String> {
        let spec = self.lease(vm_id, host, public_ar)?;
        let doc = spec.xml();
        let hostname = self.host(host)?.public_ip.to_string();
        self.host_action(host, "scaleway", "pre", &[], &doc)?;
        self.host_action(host, "scaleway_evpn", "pre", &[], &doc)?;
        let ns = format!("{}-vm{vm_id}", self.opts.prefix);
        ip(&self.ctl, &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&self.ctl, &["-n", &ns, "link", "set", "lo", "up"])?;
        self.plug(&spec, &ns, host)?;
        // Until `post` attaches it (and Scaleway says `attached`), the
        // internet does not route the flexible IP.
        let fip = SocketAddr::new(spec.public.external_ip.into(), PORT);
        let early = crate::netns::ask(&self.inet(), fip, 0, std::time::Duration::from_millis(300));
        if let Ok(a) = early {
            bail!("{fip} answered ({}) before the flexible IP was attached", a.name);
        }
        let deploy_id = format!("one-{vm_id}");
        self.local_action("scaleway", "post", &[&deploy_id, &hostname], &doc)?;
        self.host_action(host, "scaleway_evpn", "post", &[&deploy_id, &hostname], &doc)?;
        let service = Service::start(&ns, &spec.name, (Ipv4Addr::UNSPECIFIED, PORT).into())?;
        let details = format!(
            "{} (namespace {ns}) on {}: public {}/31 via {} = flexible IP {} (unreachable until post attached it); \
             private {}/{} on {} (VNI {}, MTU {})",
            spec.name,
            self.host(host)?.name,
            spec.public.ip,
            spec.public.gateway,
            spec.public.external_ip,
            spec.private.ip,
            spec.private.prefix,
            spec.private.bridge,
            spec.private.vlan_id,
            spec.private.guest_mtu
        );
        self.vms.push(VmState {
            spec,
            ns,
            host,
            service: Some(service),
        });
        self.sync_host_vms()?;
        Ok(details)
    }

    /// oned's view of which VMs run on which host.
    pub fn sync_host_vms(&self) -> anyhow::Result<()> {
        for (i, h) in self.cluster.hosts.iter().enumerate() {
            let ids: Vec<i64> = self
                .vms
                .iter()
                .filter(|v| v.host == i)
                .filter_map(|v| i64::try_from(v.spec.id).ok())
                .collect();
            self.oned()?
                .set_host_vms(h.one_id, &ids)
                .map_err(|e| anyhow!("oned: {e}"))?;
        }
        Ok(())
    }

    /// A live migration of VM `index` to host `dest`, in oned's order:
    /// `pre` on the destination, the VM moves, `post` (the public driver's
    /// on the frontend: the flexible IP follows), `clean` for the source.
    pub fn migrate(&mut self, index: usize, dest: usize) -> anyhow::Result<String> {
        let vm = self.vms.get(index).context("no such VM")?;
        let src = vm.host;
        let mut spec = vm.spec.clone();
        spec.history.push(self.stay(dest)?);
        spec.lcm_state = LCM_MIGRATE;
        let doc = spec.xml();
        let (src_h, dst_h) = (self.host(src)?.clone(), self.host(dest)?.clone());
        self.host_action(dest, "scaleway", "pre", &[], &doc)?;
        self.host_action(dest, "scaleway_evpn", "pre", &[], &doc)?;
        // "libvirt": the VM now runs on the destination.
        for (nic, bridge, mtu) in [
            (0, &spec.public.bridge, 1500),
            (1, &spec.private.bridge, spec.private.guest_mtu),
        ] {
            let tap = target(spec.id, nic);
            let mtu = mtu.to_string();
            ip(
                &self.ctl,
                &["-n", &src_h.namespace, "link", "set", &tap, "netns", &dst_h.namespace],
            )?;
            ip(
                &self.ctl,
                &[
                    "-n",
                    &dst_h.namespace,
                    "link",
                    "set",
                    &tap,
                    "mtu",
                    &mtu,
                    "master",
                    bridge,
                    "up",
                ],
            )?;
        }
        // oned's order (one_vmm_exec.rb): clean for the source, then post on
        // the destination; both get the source host as `:host`.
        let deploy_id = format!("one-{}", spec.id);
        let src_name = src_h.public_ip.to_string();
        self.local_action("scaleway", "clean", &[&src_name], &doc)?;
        self.host_action(src, "scaleway_evpn", "clean", &[&src_name], &doc)?;
        self.local_action("scaleway", "post", &[&deploy_id, &src_name], &doc)?;
        self.host_action(dest, "scaleway_evpn", "post", &[&deploy_id, &src_name], &doc)?;
        spec.lcm_state = 3;
        let name = spec.name.clone();
        if let Some(vm) = self.vms.get_mut(index) {
            vm.spec = spec;
            vm.host = dest;
        }
        self.sync_host_vms()?;
        Ok(format!(
            "{name}: pre on {}, taps moved, clean on {} (flexible IP detached), post (flexible IP attached to {}'s server)",
            dst_h.name, src_h.name, dst_h.name
        ))
    }

    /// Terminates VM `index` as oned does: `clean` (the public driver's on
    /// the frontend), the VM gone, its leases released.
    pub fn terminate(&mut self, index: usize) -> anyhow::Result<String> {
        let vm = self.vms.get_mut(index).context("no such VM")?;
        vm.service = None;
        let mut spec = vm.spec.clone();
        let (ns, host) = (vm.ns.clone(), vm.host);
        spec.lcm_state = LCM_SHUTDOWN;
        let doc = spec.xml();
        let hostname = self.host(host)?.public_ip.to_string();
        // The VM stops: its taps go with its namespace.
        ip(&self.ctl, &["netns", "del", &ns])?;
        self.namespaces.retain(|n| n != &ns);
        self.local_action("scaleway", "clean", &[&hostname], &doc)?;
        self.host_action(host, "scaleway_evpn", "clean", &[&hostname], &doc)?;
        let oned = self.oned()?;
        oned.release(spec.public.network_id, spec.public.ar_id, &spec.public.mac)
            .map_err(|e| anyhow!("oned: releasing {}: {e}", spec.public.ip))?;
        oned.release(spec.private.network_id, spec.private.ar_id, &spec.private.mac)
            .map_err(|e| anyhow!("oned: releasing {}: {e}", spec.private.ip))?;
        self.vms.retain(|v| v.spec.id != spec.id);
        self.sync_host_vms()?;
        Ok(format!(
            "{}: clean on {}, namespace {ns} deleted, leases {} and {} released",
            spec.name,
            self.host(host)?.name,
            spec.public.ip,
            spec.private.ip
        ))
    }

    /// Allocates the private network from the provision's template (oned's
    /// `onevntemplate instantiate`, with an explicit VLAN_ID).
    pub fn allocate_private_network(&mut self) -> anyhow::Result<String> {
        let oned = self.oned()?;
        let tpl = oned
            .vntemplates()
            .into_iter()
            .find(|t| t.id == self.cluster.private_template)
            .context("the provision's private network template is not in oned")?;
        let mut t = tpl.template.clone();
        t.attributes
            .retain(|(k, _)| !["NAME", "AUTOMATIC_VLAN_ID", "VLAN_ID"].contains(&k.as_str()));
        let name = format!("{}-net", tpl.name);
        t.single("NAME", &name).single("VLAN_ID", &VNI.to_string());
        let text = t.render().map_err(|e| anyhow!("{e}"))?;
        let id: i64 = oned
            .call(
                "one.vn.allocate",
                &[Param::Str(text), Param::Int(self.cluster.cluster_id)],
            )
            .map_err(|e| anyhow!("oned: one.vn.allocate: {e}"))?
            .parse()?;
        let v = oned
            .vnets()
            .into_iter()
            .find(|v| v.id == id)
            .context("the new network is not in oned")?;
        if v.state != 1 {
            bail!("network {id} is in state {} (not READY): {:?}", v.state, v.template);
        }
        let ar = v.ars.first().context("the private network has no address range")?;
        let details = format!(
            "network {id} {name} from template {}: VN_MAD {}, bridge {}, VLAN_ID (VNI) {VNI}, range {} + {}",
            tpl.name,
            v.vn_mad,
            v.bridge,
            ar.attrs.get("IP").map_or("?", String::as_str),
            ar.attrs.get("SIZE").map_or("?", String::as_str)
        );
        self.private_vnet = Some(id);
        Ok(details)
    }
}
