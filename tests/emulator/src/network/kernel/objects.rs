//! The kernel objects of the topology, one by one: flexible-IP routes,
//! hosts (a namespace each, with their veths and files), private network
//! segments and the hosts' NICs on them.

use super::*;

impl Kernel {
    pub(super) fn add_route(&mut self, key: &str, r: &FipRoute) -> Res {
        let via = r.via.to_string();
        let inet = self.naming.inet();
        ip(&[
            "-n",
            &inet,
            "route",
            "replace",
            &r.destination,
            "via",
            &via,
            "dev",
            &r.dev,
        ])?;
        self.applied.routes.insert(key.to_string(), r.clone());
        Ok(())
    }

    pub(super) fn remove_route(&mut self, key: &str) -> Res {
        match self.applied.routes.remove(key) {
            Some(r) => ip(&["-n", &self.naming.inet(), "route", "del", &r.destination]),
            None => Ok(()),
        }
    }

    /// The host's own folder under the state root.
    pub fn host_dir(&self, server_id: &str) -> PathBuf {
        self.state_root.join(server_id)
    }

    pub(super) fn add_host(&mut self, h: &Host) -> Res {
        let inet = self.naming.inet();
        let ns = h.namespace.as_str();
        if let Err(e) = self.add_ns(ns, &[]) {
            let _ = self.del_ns(ns);
            return Err(e);
        }
        let built = (|| -> Res {
            ip(&[
                "-n", &inet, "link", "add", &h.uplink, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            let mut outside = vec![
                format!("link set {} up", h.uplink),
                format!("route replace {}/32 dev {} src {CLIENT_V4}", h.ipv4, h.uplink),
            ];
            let mut inside = vec![
                "link set eth0 up".to_string(),
                format!("addr add {}/32 dev eth0", h.ipv4),
                format!("route replace default via {LINK_V4} dev eth0 onlink"),
            ];
            if let Some(v6) = h.ipv6 {
                outside.push(format!("addr add {LINK_V6}/64 dev {} nodad", h.uplink));
                outside.push(format!("route replace {v6}/128 dev {} src {CLIENT_V6}", h.uplink));
                inside.push(format!("addr add {v6}/128 dev eth0 nodad"));
                inside.push(format!("route replace ::/0 via {LINK_V6} dev eth0"));
            }
            ip_batch(&inet, &outside)?;
            ip_batch(ns, &inside)?;
            let dir = self.host_dir(&h.server_id);
            std::fs::create_dir_all(dir.join("state")).map_err(|e| format!("{}: {e}", dir.display()))?;
            if self.host_fs {
                hostfs::prepare(&dir.join("fs"))?;
            }
            if self.frr {
                let instance = frr::Instance::start(ns, &dir.join("frr"))?;
                let folder = instance.dir.display().to_string();
                self.daemons.insert(h.server_id.clone(), instance);
                // With its own files, the server sees the instance on /run/frr,
                // FRR's default; otherwise the drivers are told where it is.
                if !self.host_fs {
                    frr::append_env(&dir.join("env"), frr::FRR_DIR_ENV, &folder)?;
                }
            }
            Ok(())
        })();
        match built {
            Ok(()) => {
                self.applied.hosts.insert(h.server_id.clone(), h.clone());
                Ok(())
            }
            Err(e) => {
                self.daemons.remove(&h.server_id);
                let _ = ip(&["-n", &inet, "link", "del", &h.uplink]);
                let _ = self.del_ns(ns);
                let _ = std::fs::remove_dir_all(self.host_dir(&h.server_id));
                Err(e)
            }
        }
    }

    pub(super) fn remove_host(&mut self, server_id: &str) -> Res {
        let Some(h) = self.applied.hosts.remove(server_id) else {
            return Ok(());
        };
        // Its FRR first (stopped by PID), while its namespace still exists.
        self.daemons.remove(server_id);
        let nics: Vec<String> = self
            .applied
            .nics
            .iter()
            .filter(|(_, (n, _))| n.server_id == server_id)
            .map(|(k, _)| k.clone())
            .collect();
        let mut result = Ok(());
        for k in nics {
            if let Err(e) = self.remove_nic(&k) {
                result = Err(e);
            }
        }
        self.applied.routes.retain(|_, r| r.server_id != server_id);
        // The uplink's routes go with it.
        let _ = ip(&["-n", &self.naming.inet(), "link", "del", &h.uplink]);
        if let Err(e) = self.del_ns(&h.namespace) {
            result = Err(e);
        }
        let dir = self.host_dir(server_id);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            result = Err(format!("{}: {e}", dir.display()));
        }
        result
    }

    pub(super) fn add_segment(&mut self, s: &Segment) -> Res {
        let ns = s.namespace.as_str();
        let built = self.add_ns(ns, &[]).and_then(|()| {
            ip_batch(
                ns,
                &[
                    "link add name br0 type bridge".to_string(),
                    "link set br0 up".to_string(),
                ],
            )
        });
        match built {
            Ok(()) => {
                self.applied.segments.insert(s.private_network_id.clone(), s.clone());
                Ok(())
            }
            Err(e) => {
                let _ = self.del_ns(ns);
                Err(e)
            }
        }
    }

    pub(super) fn remove_segment(&mut self, pn_id: &str) -> Res {
        let Some(s) = self.applied.segments.remove(pn_id) else {
            return Ok(());
        };
        let nics: Vec<String> = self
            .applied
            .nics
            .iter()
            .filter(|(_, (n, _))| n.private_network_id == pn_id)
            .map(|(k, _)| k.clone())
            .collect();
        let mut result = Ok(());
        for k in nics {
            if let Err(e) = self.remove_nic(&k) {
                result = Err(e);
            }
        }
        if let Err(e) = self.del_ns(&s.namespace) {
            result = Err(e);
        }
        result
    }

    /// The first `scwprivN` free in the server's namespace.
    pub(super) fn free_ifname(&self, server_id: &str) -> String {
        let used: BTreeSet<&str> = self
            .applied
            .nics
            .values()
            .filter(|(n, _)| n.server_id == server_id)
            .map(|(_, name)| name.as_str())
            .collect();
        (0..)
            .map(|i| format!("scwpriv{i}"))
            .find(|n| !used.contains(n.as_str()))
            .unwrap_or_default()
    }

    pub(super) fn add_nic(&mut self, key: &str, n: &PrivateNic) -> Res {
        let (Some(h), Some(s)) = (
            self.applied.hosts.get(&n.server_id),
            self.applied.segments.get(&n.private_network_id),
        ) else {
            return Ok(());
        };
        let (srv_ns, pn_ns) = (h.namespace.clone(), s.namespace.clone());
        let ifname = self.free_ifname(&n.server_id);
        ip(&[
            "-n", &pn_ns, "link", "add", &n.port, "type", "veth", "peer", "name", &ifname, "netns", &srv_ns,
        ])?;
        let mut inside = Vec::new();
        if !n.mac.is_empty() {
            inside.push(format!("link set {ifname} address {}", n.mac));
        }
        inside.push(format!("link set {ifname} mtu {} up", n.mtu));
        for a in &n.addresses {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            inside.push(format!("addr add {a} dev {ifname}{nodad}"));
        }
        let built = ip_batch(
            &pn_ns,
            &[
                format!("link set {} mtu {} master br0", n.port, n.mtu),
                format!("link set {} up", n.port),
            ],
        )
        .and_then(|()| ip_batch(&srv_ns, &inside));
        match built {
            Ok(()) => {
                self.applied.nics.insert(key.to_string(), (n.clone(), ifname));
                Ok(())
            }
            Err(e) => {
                let _ = ip(&["-n", &pn_ns, "link", "del", &n.port]);
                Err(e)
            }
        }
    }

    pub(super) fn remove_nic(&mut self, key: &str) -> Res {
        let Some((n, _)) = self.applied.nics.remove(key) else {
            return Ok(());
        };
        match self.applied.segments.get(&n.private_network_id) {
            Some(s) => ip(&["-n", &s.namespace, "link", "del", &n.port]),
            None => Ok(()),
        }
    }
}
