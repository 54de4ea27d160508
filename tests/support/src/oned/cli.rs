//! Driving a test oned as an administrator does: OpenNebula's CLI as
//! oneadmin, template files, waiting for oned to act.

use std::time::{Duration, Instant};

use super::{RealOned, Record, TEST_VMM};

impl RealOned {
    /// What the recorder saw so far, oldest first (see [`Options::recorder`]).
    pub fn records(&self) -> Vec<Record> {
        let dir = self.dir.path().join("records");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.retain(|n| n.ends_with(".stdin"));
        names.sort_by_key(|n| {
            n.split('-')
                .next()
                .and_then(|t| t.parse::<u128>().ok())
                .unwrap_or_default()
        });
        names
            .iter()
            .map(|n| {
                let base = n.trim_end_matches(".stdin");
                let call = base.splitn(3, '-').nth(2).unwrap_or_default().to_owned();
                let args = std::fs::read_to_string(dir.join(format!("{base}.args"))).unwrap_or_default();
                Record {
                    call,
                    args: args.lines().map(str::to_owned).collect(),
                    stdin: std::fs::read(dir.join(n)).expect("read a record"),
                }
            })
            .collect()
    }

    /// Writes a template file oneadmin can read (in its home); returns its path.
    pub fn template_file(&self, name: &str, text: &str) -> String {
        let path = self.home.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.display().to_string()
    }

    /// `<program> create FILE` with a template; the new object's id.
    pub fn create(&self, program: &str, args: &[&str], template: &str) -> u32 {
        let file = self.template_file(&format!("{program}-{}.tmpl", std::process::id()), template);
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        all.push(&file);
        id_of(&self.cli_ok(program, &all))
    }

    /// Waits until network `id` is READY (`onevnet create` and `onevntemplate
    /// instantiate` return at once in 7.0; the network goes INIT 0, LOCK_CREATE
    /// 2, then READY 1 or ERROR 5). Returns the network.
    pub fn wait_vnet_ready(&self, id: u32) -> opennebula::xml::Element {
        let started = Instant::now();
        loop {
            let v = self.show("onevnet", id);
            let state = v.at("STATE").map_or("", |e| e.text.as_str()).to_owned();
            match state.as_str() {
                "1" => return v,
                "0" | "2" if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => panic!(
                    "network {id} is in state {state}, not READY:\n{}\n--- oned.log\n{}",
                    v.to_xml(),
                    self.log_tail(30)
                ),
            }
        }
    }

    /// A host of the test hypervisor (monitored by the `dummy` probes).
    pub fn create_host(&self, name: &str) -> u32 {
        id_of(&self.cli_ok("onehost", &["create", name, "--im", "dummy", "--vm", TEST_VMM]))
    }

    /// `<program> show ID --xml`, parsed.
    pub fn show(&self, program: &str, id: u32) -> opennebula::xml::Element {
        let text = self.cli_ok(program, &["show", &id.to_string(), "--xml"]);
        opennebula::xml::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{program} show {id}: {e}\n{text}"))
    }
}

/// The id an OpenNebula `create` prints (`ID: 7`).
pub fn id_of(printed: &str) -> u32 {
    printed
        .trim()
        .trim_start_matches("ID:")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no ID in {printed:?}"))
}

impl RealOned {
    /// Every object of a pool as oneadmin sees it, through XML-RPC
    /// (`one.<pool>.info`): `hostpool`, `clusterpool`, `datastorepool`,
    /// `vnpool`, `vntemplatepool`, `vmpool`.
    pub fn pool(&self, pool: &str) -> Vec<opennebula::xml::Element> {
        use opennebula::oned::Param::Int;
        let params = match pool {
            "vnpool" | "vntemplatepool" => vec![Int(-2), Int(-1), Int(-1)],
            "vmpool" => vec![Int(-2), Int(-1), Int(-1), Int(-1)],
            _ => Vec::new(),
        };
        let method = format!("one.{pool}.info");
        self.api()
            .call_xml(&method, &params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
            .children
    }
}

impl RealOned {
    /// `one.<kind>.info` of object `id` (`vm`, `vn`, `host`, ...): the
    /// document exactly as oned answers it, as our drivers read it.
    pub fn info_text(&self, kind: &str, id: u32) -> String {
        use opennebula::oned::Param::{Bool, Int};
        let method = format!("one.{kind}.info");
        self.api()
            .call(&method, &[Int(i64::from(id)), Bool(false)])
            .unwrap_or_else(|e| panic!("{method} {id}: {e}"))
    }
}

/// The address ranges of a network document (`one.vn.info`, `onevnet show
/// --xml`): each one's leaf attributes (`AR_ID`, `IP`, `EXTERNAL_IP`, ...).
pub fn ranges(vnet: &opennebula::xml::Element) -> Vec<std::collections::BTreeMap<String, String>> {
    vnet.at("AR_POOL")
        .map(|p| {
            p.children_named("AR")
                .map(|ar| {
                    ar.children
                        .iter()
                        .filter(|c| c.is_leaf())
                        .map(|c| (c.name.clone(), c.text.clone()))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}
