//! The frontend's world for benchmarks 1 and 2: the Scaleway emulator on
//! loopback, an in-memory oned (`test_support::onedsim`) that runs the real
//! IPAM driver, Elastic Metal servers registered as OpenNebula hosts, the
//! action files, and VM documents as oned writes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use opennebula::oned::Param;
use scaleway::baremetal::NewServer;
use scaleway::{Client, Options, RetryPolicy, WaitPolicy, Zone};
use scaleway_emulator::{Emulator, Running};
use test_support::onedsim::{Config, OnedSim};

use crate::shim;
use crate::util::{Bins, TempDir, fixture, link_as};

pub const SECRET: &str = "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7";
pub const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";
pub const ZONE: &str = "fr-par-1";
pub const IPAM_ACTIONS: [&str; 5] = [
    "register_address_range",
    "unregister_address_range",
    "get_address",
    "allocate_address",
    "free_address",
];

/// An address range as oned shows it: AR_ID and attributes.
pub type Range = (i64, Vec<(String, String)>);

/// The emulator, oned, the hosts and the action files.
pub struct World {
    pub emu: Running,
    pub oned: OnedSim,
    pub dir: TempDir,
    /// `remotes/`: `ipam/scaleway_fip/<action>`, `vnm/scaleway/<action>`, `vnm/scaleway_evpn/<action>`.
    pub remotes: PathBuf,
    /// (OpenNebula host id, name, server id).
    pub hosts: Vec<(i64, String, String)>,
}

/// The Scaleway variables of a driver (and the bench's own client).
pub fn scaleway_env(url: &str) -> Vec<(String, String)> {
    vec![
        ("SCW_SECRET_KEY".into(), SECRET.into()),
        ("SCW_DEFAULT_PROJECT_ID".into(), PROJECT.into()),
        ("SCW_DEFAULT_ZONE".into(), ZONE.into()),
        ("SCW_API_URL".into(), url.into()),
        (
            "SCW_CONFIG_PATH".into(),
            "/nonexistent/one-scaleway-bench/config.yaml".into(),
        ),
    ]
}

/// Links every action file of the drivers under `remotes`.
pub fn link_actions(bins: &Bins, remotes: &Path) -> anyhow::Result<()> {
    for a in IPAM_ACTIONS {
        link_as(&bins.ipam, remotes, &format!("ipam/scaleway_fip/{a}"))?;
    }
    for a in [
        "pre",
        "post",
        "clean",
        "clean_host",
        "update_sg",
        "update_nic",
        "vnet_create",
        "vnet_delete",
    ] {
        link_as(&bins.vnm, remotes, &format!("vnm/scaleway/{a}"))?;
        link_as(&bins.vnm, remotes, &format!("vnm/scaleway_evpn/{a}"))?;
    }
    link_as(&bins.me, remotes, &format!("bin/{}", shim::SSH))?;
    Ok(())
}

impl World {
    /// `hosts` servers (ready at once at speed 0) registered as OpenNebula hosts.
    pub fn start(bins: &Bins, speed: f64, hosts: usize) -> anyhow::Result<Self> {
        let emu = Emulator::start(scaleway_emulator::Options {
            speed,
            project_ids: vec![PROJECT.into()],
            ..Default::default()
        })
        .map_err(|e| anyhow!("the emulator: {e:?}"))?;
        let dir = TempDir::new("world")?;
        let remotes = dir.join("remotes");
        link_actions(bins, &remotes)?;
        std::fs::write(dir.join("one_auth"), "oneadmin:bench\n")?;
        let mut driver_env = scaleway_env(&emu.url());
        driver_env.push((
            "ONE_SCALEWAY_STATE_DIR".into(),
            dir.join("oned-ipam").display().to_string(),
        ));
        let oned = OnedSim::start(Config {
            ipam_dir: Some(remotes.join("ipam")),
            driver_env,
            driver_timeout: Duration::from_secs(60),
            ..Config::default()
        })
        .map_err(|e| anyhow!("onedsim: {e}"))?;
        let mut world = Self {
            emu,
            oned,
            dir,
            remotes,
            hosts: Vec::new(),
        };
        let client = world.client()?;
        let zone = Zone::new(ZONE)?;
        let offer = client
            .find_offer(&zone, "EM-A116X-SSD", "hourly")?
            .ok_or_else(|| anyhow!("the emulator has no EM-A116X-SSD"))?;
        for n in 1..=hosts {
            let name = format!("edge-host{n}");
            let new = NewServer {
                project_id: PROJECT.into(),
                offer_id: offer.id.clone(),
                name: name.clone(),
                ..Default::default()
            };
            let server = client.create_server(&zone, &new, &format!("bench-{name}"))?;
            let wait = WaitPolicy::new(Duration::from_millis(10), Duration::from_secs(30));
            let server = client.wait_server_ready(&zone, &server.id, wait)?;
            let id = world.id("one.host.allocate", &[s(&name), s("kvm"), s("kvm"), Param::Int(-1)])?;
            let template = format!("PROVISION = [ DEPLOY_ID = \"{ZONE}/{}\" ]", server.id);
            world.call("one.host.update", &[Param::Int(id), s(&template), Param::Int(1)])?;
            world.hosts.push((id, name, server.id));
        }
        world.emu.clear_calls();
        Ok(world)
    }

    /// A Scaleway client on the emulator (for setting things up).
    pub fn client(&self) -> anyhow::Result<Client> {
        let pairs = scaleway_env(&self.emu.url());
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let credentials = scaleway::resolve(&get, None)?;
        let options = Options {
            retry: RetryPolicy {
                base_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            ..Options::default()
        };
        Ok(Client::new(credentials, options)?)
    }

    pub fn call(&self, method: &str, params: &[Param]) -> anyhow::Result<String> {
        self.oned
            .call(method, params)
            .map_err(|e| anyhow!("oned {method}: {e}"))
    }

    pub fn id(&self, method: &str, params: &[Param]) -> anyhow::Result<i64> {
        let body = self.call(method, params)?;
        body.parse().with_context(|| format!("{method} answered {body:?}"))
    }

    /// The frontend drivers' environment (oned, Scaleway, the SSH stand-in).
    pub fn frontend_env(&self) -> Vec<(String, String)> {
        let mut env = scaleway_env(&self.emu.url());
        env.extend([
            ("ONE_XMLRPC".into(), self.oned.url()),
            ("ONE_AUTH".into(), self.dir.join("one_auth").display().to_string()),
            (
                "ONE_SCALEWAY_SSH".into(),
                self.remotes.join("bin").join(shim::SSH).display().to_string(),
            ),
            (
                "ONE_SCALEWAY_STATE_DIR".into(),
                self.dir.join("ipam").display().to_string(),
            ),
        ]);
        env
    }

    /// The action file `remotes/<relative>`.
    pub fn action(&self, relative: &str) -> PathBuf {
        self.remotes.join(relative)
    }

    /// The address ranges of network `vnet`: (AR_ID, attributes).
    pub fn ranges(&self, vnet: i64) -> anyhow::Result<Vec<Range>> {
        let v = self
            .oned
            .vnets()
            .into_iter()
            .find(|v| v.id == vnet)
            .ok_or_else(|| anyhow!("no network {vnet}"))?;
        Ok(v.ars
            .into_iter()
            .map(|a| (a.id, a.attrs.into_iter().collect()))
            .collect())
    }
}

pub fn s(v: &str) -> Param {
    Param::Str(v.to_owned())
}

/// A public NIC of a VM document.
#[derive(Debug, Clone)]
pub struct PublicNic {
    pub nic_id: u32,
    pub vnet: i64,
    pub ar_id: i64,
    pub ip: String,
    pub gateway: String,
    pub external: String,
}

impl PublicNic {
    /// The NIC of range `ar` of network `vnet` (attributes as oned shows them).
    pub fn of_range(nic_id: u32, vnet: i64, ar: &Range) -> anyhow::Result<Self> {
        let get = |k: &str| {
            ar.1.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("range {} has no {k}", ar.0))
        };
        Ok(Self {
            nic_id,
            vnet,
            ar_id: ar.0,
            ip: get("IP")?,
            gateway: get("GATEWAY")?,
            external: get("EXTERNAL_IP")?,
        })
    }
}

/// A VM document as oned writes it (the `vm/deploy.xml` fixture, captured
/// from a real oned) with VM id `id`, these public NICs (and a private NIC
/// with `VLAN_ID = private_vni`, if any) in place of the captured ones, its
/// last history record on host `hid` named `host`.
pub fn vm_document(
    id: u64,
    nics: &[PublicNic],
    private_vni: Option<u32>,
    host: &str,
    hid: i64,
) -> anyhow::Result<String> {
    use opennebula::xml::Element;
    let base = fixture("vm/deploy.xml")?;
    let mut vm = opennebula::xml::parse(base.as_bytes()).map_err(|e| anyhow!("vm/deploy.xml: {e}"))?;
    let template = vm
        .children
        .iter_mut()
        .find(|c| c.name == "TEMPLATE")
        .ok_or_else(|| anyhow!("vm/deploy.xml has no TEMPLATE"))?;
    let captured = |mad: &str| {
        template
            .children_named("NIC")
            .find(|n| n.child("VN_MAD").is_some_and(|v| v.text == mad))
            .cloned()
            .ok_or_else(|| anyhow!("vm/deploy.xml has no {mad} NIC"))
    };
    let (public, private) = (captured("scaleway")?, captured("scaleway_evpn")?);
    let with = |base: &Element, values: &[(&str, String)]| {
        let mut nic = base.clone();
        for (name, value) in values {
            nic.children.retain(|c| c.name != *name);
            nic.children.push(Element::leaf(name, value));
        }
        nic
    };
    template.children.retain(|c| c.name != "NIC" && c.name != "NIC_ALIAS");
    for n in nics {
        template.children.push(with(
            &public,
            &[
                ("AR_ID", n.ar_id.to_string()),
                ("EXTERNAL_IP", n.external.clone()),
                ("GATEWAY", n.gateway.clone()),
                ("IP", n.ip.clone()),
                ("MAC", mac_of(&n.ip)),
                ("NETWORK_ID", n.vnet.to_string()),
                ("NIC_ID", n.nic_id.to_string()),
                ("TARGET", format!("one-{id}-{}", n.nic_id)),
            ],
        ));
    }
    if let Some(vni) = private_vni {
        let nic_id = nics.len();
        template.children.push(with(
            &private,
            &[
                ("BRIDGE", format!("onebr.{vni}")),
                ("MAC", format!("02:00:c0:a8:{:02x}:{:02x}", (id >> 8) & 0xff, id & 0xff)),
                ("NIC_ID", nic_id.to_string()),
                ("TARGET", format!("one-{id}-{nic_id}")),
                ("VLAN_ID", vni.to_string()),
            ],
        ));
    }
    for c in &mut vm.children {
        match c.name.as_str() {
            "ID" => c.text = id.to_string(),
            "HISTORY_RECORDS" => {
                for h in c.children.iter_mut().filter(|h| h.name == "HISTORY") {
                    for f in &mut h.children {
                        match f.name.as_str() {
                            "OID" => f.text = id.to_string(),
                            "HOSTNAME" => f.text = host.to_owned(),
                            "HID" => f.text = hid.to_string(),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vm.to_xml())
}

/// OpenNebula's MAC for an IPv4 address (02:00 + the address).
pub fn mac_of(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').filter_map(|p| p.parse().ok()).collect();
    if o.len() != 4 {
        return "02:00:00:00:00:01".into();
    }
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Base64 of a document, as oned writes it on a driver's stdin.
pub fn b64(doc: &str) -> String {
    opennebula::base64::encode(doc.as_bytes())
}

/// An IPAM request: `AR = [...]` attributes and an optional address part.
pub fn ipam_request(ar: &[(String, String)], address: &str) -> String {
    let attrs: String = ar.iter().map(|(k, v)| format!("<{k}><![CDATA[{v}]]></{k}>")).collect();
    format!("<IPAM_DRIVER_ACTION_DATA><AR>{attrs}</AR>{address}</IPAM_DRIVER_ACTION_DATA>")
}
