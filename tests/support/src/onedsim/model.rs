//! The objects (clusters, hosts, datastores, network templates, documents),
//! their templates and their XML as oned writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use opennebula::template::{Template, Value};
use opennebula::xml;

use super::document::Document;
use super::vnet::Vnet;
use super::{ClusterView, DatastoreView, HostView, VnTemplateView};

/// oned's state.
pub(crate) struct State {
    pub next_cluster: i64,
    pub next_host: i64,
    pub next_datastore: i64,
    pub next_vnet: i64,
    pub next_vntemplate: i64,
    pub clusters: BTreeMap<i64, Cluster>,
    pub hosts: BTreeMap<i64, Host>,
    pub datastores: BTreeMap<i64, Datastore>,
    pub vnets: BTreeMap<i64, Vnet>,
    pub vntemplates: BTreeMap<i64, VnTemplate>,
    pub documents: BTreeMap<i64, Document>,
}

impl State {
    /// A fresh oned: cluster 0 `default` holding datastores 0 `system`,
    /// 1 `default` and 2 `files`; the given documents.
    pub fn new(documents: &[String]) -> Result<Self, String> {
        let mut reserved = Template::new();
        reserved.single("RESERVED_CPU", "").single("RESERVED_MEM", "");
        let default = Cluster {
            id: 0,
            name: "default".into(),
            hosts: BTreeSet::new(),
            datastores: [0, 1, 2].into(),
            vnets: BTreeSet::new(),
            template: reserved,
        };
        let ds = |id: i64, name: &str, ds_type: i64, ds_mad: &str| {
            let mut template = Template::new();
            template
                .single("DS_MAD", ds_mad)
                .single("TM_MAD", "ssh")
                .single("TYPE", DS_TYPES[ds_type as usize]);
            (
                id,
                Datastore {
                    id,
                    name: name.into(),
                    ds_mad: ds_mad.into(),
                    tm_mad: "ssh".into(),
                    ds_type,
                    clusters: [0].into(),
                    template,
                },
            )
        };
        let mut docs = BTreeMap::new();
        for text in documents {
            let doc = Document::parse(text)?;
            docs.insert(doc.id, doc);
        }
        Ok(Self {
            next_cluster: 100,
            next_host: 0,
            next_datastore: 100,
            next_vnet: 0,
            next_vntemplate: 0,
            clusters: [(0, default)].into(),
            hosts: BTreeMap::new(),
            datastores: [
                ds(0, "system", 1, "-"),
                ds(1, "default", 0, "fs"),
                ds(2, "files", 2, "fs"),
            ]
            .into(),
            vnets: BTreeMap::new(),
            vntemplates: BTreeMap::new(),
            documents: docs,
        })
    }

    pub fn cluster_name(&self, id: i64) -> String {
        self.clusters.get(&id).map(|c| c.name.clone()).unwrap_or_default()
    }
}

/// `TYPE` of datastores, by their number.
pub(crate) const DS_TYPES: [&str; 4] = ["IMAGE_DS", "SYSTEM_DS", "FILE_DS", "BACKUP_DS"];

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `ctime` (UTC) as oned writes `TIMESTAMP`s: `Thu Jan  1 00:00:00 1970`.
pub(crate) fn ctime(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {day:>2} {:02}:{:02}:{:02} {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ----------------------------------------------------------------------------
// Templates
// ----------------------------------------------------------------------------

/// Parses template text as oned does (attribute names upper-cased).
pub(crate) fn parse_template(text: &str) -> Result<Template, String> {
    let mut t = Template::parse(text).map_err(|e| e.to_string())?;
    for (name, _) in &mut t.attributes {
        *name = name.to_ascii_uppercase();
    }
    Ok(t)
}

/// The first simple attribute `name`.
pub(crate) fn get<'a>(t: &'a Template, name: &str) -> Option<&'a str> {
    t.attributes.iter().find_map(|(n, v)| match v {
        Value::Single(s) if n == name => Some(s.as_str()),
        _ => None,
    })
}

/// Removes every attribute `name`; the first one's value if simple.
pub(crate) fn take(t: &mut Template, name: &str) -> Option<String> {
    let mut first = None;
    t.attributes.retain(|(n, v)| {
        if n != name {
            return true;
        }
        if first.is_none()
            && let Value::Single(s) = v
        {
            first = Some(s.clone());
        }
        false
    });
    first
}

/// Removes and returns every vector attribute `name`.
pub(crate) fn take_vectors(t: &mut Template, name: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    t.attributes.retain(|(n, v)| match v {
        Value::Vector(pairs) if n == name => {
            out.push(pairs.clone());
            false
        }
        _ => true,
    });
    out
}

/// Replaces every attribute `name` with one simple value.
pub(crate) fn set(t: &mut Template, name: &str, value: &str) {
    take(t, name);
    t.single(name, value);
}

/// `one.X.update`: replace the template (`append` 0) or merge into it (1:
/// every attribute given replaces all those of its name).
pub(crate) fn update(t: &mut Template, new: Template, append: bool) {
    if !append {
        *t = new;
        return;
    }
    let names: BTreeSet<String> = new.attributes.iter().map(|(n, _)| n.clone()).collect();
    t.attributes.retain(|(n, _)| !names.contains(n));
    t.attributes.extend(new.attributes);
}

/// A value in a CDATA section, as oned stores template values.
pub(crate) fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

/// `<NAME>escaped</NAME>`.
pub(crate) fn leaf(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", xml::escape(value))
}

/// A vector attribute as oned writes it: keys sorted, values in CDATA,
/// empty values as empty elements.
pub(crate) fn vector_xml(name: &str, pairs: &[(String, String)]) -> String {
    let mut sorted: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in pairs {
        sorted.entry(k.as_str()).or_insert(v.as_str());
    }
    let inner: String = sorted
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                format!("<{k}/>")
            } else {
                format!("<{k}>{}</{k}>", cdata(v))
            }
        })
        .collect();
    format!("<{name}>{inner}</{name}>")
}

/// A template as oned writes it: attributes sorted by name (stable), values
/// in CDATA.
pub(crate) fn template_xml(root: &str, t: &Template) -> String {
    let mut attrs: Vec<&(String, Value)> = t.attributes.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    if attrs.is_empty() {
        return format!("<{root}/>");
    }
    let inner: String = attrs
        .iter()
        .map(|(n, v)| match v {
            Value::Single(s) => format!("<{n}>{}</{n}>", cdata(s)),
            Value::Vector(pairs) => vector_xml(n, pairs),
        })
        .collect();
    format!("<{root}>{inner}</{root}>")
}

/// `<ROOT><ID>..</ID>...</ROOT>`.
pub(crate) fn ids_xml(root: &str, ids: &BTreeSet<i64>) -> String {
    if ids.is_empty() {
        return format!("<{root}/>");
    }
    let inner: String = ids.iter().map(|i| format!("<ID>{i}</ID>")).collect();
    format!("<{root}>{inner}</{root}>")
}

/// oneadmin's permissions with the default umask (177).
pub(crate) const OWNER: &str = "<UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>";
pub(crate) const PERMISSIONS: &str = "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>\
    <GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M>\
    <OTHER_A>0</OTHER_A></PERMISSIONS>";

/// `PoolObjectSQL::name_is_valid`.
pub(crate) fn name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Invalid NAME, it cannot be empty".into());
    }
    if let Some(c) = name.chars().find(|c| "&|:\\\";/'#{}$<>".contains(*c)) {
        return Some(format!("Invalid NAME, char '{c}' is not allowed"));
    }
    if name.len() > 128 {
        return Some("Invalid NAME, max length is 128 chars".into());
    }
    None
}

// ----------------------------------------------------------------------------
// Objects
// ----------------------------------------------------------------------------

pub(crate) struct Cluster {
    pub id: i64,
    pub name: String,
    pub hosts: BTreeSet<i64>,
    pub datastores: BTreeSet<i64>,
    pub vnets: BTreeSet<i64>,
    pub template: Template,
}

impl Cluster {
    pub fn xml(&self) -> String {
        format!(
            "<CLUSTER><ID>{}</ID>{}{}{}{}{}</CLUSTER>",
            self.id,
            leaf("NAME", &self.name),
            ids_xml("HOSTS", &self.hosts),
            ids_xml("DATASTORES", &self.datastores),
            ids_xml("VNETS", &self.vnets),
            template_xml("TEMPLATE", &self.template)
        )
    }

    pub fn view(&self) -> ClusterView {
        ClusterView {
            id: self.id,
            name: self.name.clone(),
            hosts: self.hosts.iter().copied().collect(),
            datastores: self.datastores.iter().copied().collect(),
            vnets: self.vnets.iter().copied().collect(),
            template: self.template.clone(),
        }
    }
}

pub(crate) struct Host {
    pub id: i64,
    pub name: String,
    pub im_mad: String,
    pub vm_mad: String,
    pub cluster_id: i64,
    pub state: i64,
    pub prev_state: i64,
    pub vms: BTreeSet<i64>,
    pub template: Template,
}

impl Host {
    pub fn xml(&self, cluster_name: &str) -> String {
        let share = format!(
            "<HOST_SHARE><MEM_USAGE>0</MEM_USAGE><CPU_USAGE>0</CPU_USAGE><TOTAL_MEM>0</TOTAL_MEM>\
             <TOTAL_CPU>0</TOTAL_CPU><MAX_MEM>0</MAX_MEM><MAX_CPU>0</MAX_CPU><RUNNING_VMS>{}</RUNNING_VMS>\
             <VMS_THREAD>1</VMS_THREAD><DATASTORES><DISK_USAGE>0</DISK_USAGE><FREE_DISK>0</FREE_DISK>\
             <MAX_DISK>0</MAX_DISK><USED_DISK>0</USED_DISK></DATASTORES><PCI_DEVICES/><NUMA_NODES/></HOST_SHARE>",
            self.vms.len()
        );
        format!(
            "<HOST><ID>{}</ID>{}<STATE>{}</STATE><PREV_STATE>{}</PREV_STATE><IM_MAD>{}</IM_MAD>\
             <VM_MAD>{}</VM_MAD><CLUSTER_ID>{}</CLUSTER_ID>{}{share}{}{}<MONITORING/></HOST>",
            self.id,
            leaf("NAME", &self.name),
            self.state,
            self.prev_state,
            cdata(&self.im_mad),
            cdata(&self.vm_mad),
            self.cluster_id,
            leaf("CLUSTER", cluster_name),
            ids_xml("VMS", &self.vms),
            template_xml("TEMPLATE", &self.template)
        )
    }

    pub fn view(&self) -> HostView {
        HostView {
            id: self.id,
            name: self.name.clone(),
            im_mad: self.im_mad.clone(),
            vm_mad: self.vm_mad.clone(),
            cluster_id: self.cluster_id,
            state: self.state,
            vms: self.vms.iter().copied().collect(),
            template: self.template.clone(),
        }
    }
}

pub(crate) struct Datastore {
    pub id: i64,
    pub name: String,
    pub ds_mad: String,
    pub tm_mad: String,
    pub ds_type: i64,
    pub clusters: BTreeSet<i64>,
    pub template: Template,
}

impl Datastore {
    pub fn xml(&self) -> String {
        format!(
            "<DATASTORE><ID>{}</ID>{OWNER}{}{PERMISSIONS}<DS_MAD>{}</DS_MAD><TM_MAD>{}</TM_MAD>\
             <BASE_PATH>{}</BASE_PATH><TYPE>{}</TYPE><DISK_TYPE>0</DISK_TYPE><STATE>0</STATE>{}\
             <TOTAL_MB>0</TOTAL_MB><FREE_MB>0</FREE_MB><USED_MB>0</USED_MB><IMAGES/>{}</DATASTORE>",
            self.id,
            leaf("NAME", &self.name),
            cdata(&self.ds_mad),
            cdata(&self.tm_mad),
            cdata(&format!("/var/lib/one//datastores/{}", self.id)),
            self.ds_type,
            ids_xml("CLUSTERS", &self.clusters),
            template_xml("TEMPLATE", &self.template)
        )
    }

    pub fn view(&self) -> DatastoreView {
        DatastoreView {
            id: self.id,
            name: self.name.clone(),
            ds_type: self.ds_type,
            clusters: self.clusters.iter().copied().collect(),
            template: self.template.clone(),
        }
    }
}

pub(crate) struct VnTemplate {
    pub id: i64,
    pub name: String,
    pub regtime: i64,
    pub template: Template,
}

impl VnTemplate {
    pub fn xml(&self) -> String {
        format!(
            "<VNTEMPLATE><ID>{}</ID>{OWNER}{}{PERMISSIONS}<REGTIME>{}</REGTIME>{}</VNTEMPLATE>",
            self.id,
            leaf("NAME", &self.name),
            self.regtime,
            template_xml("TEMPLATE", &self.template)
        )
    }

    pub fn view(&self) -> VnTemplateView {
        VnTemplateView {
            id: self.id,
            name: self.name.clone(),
            template: self.template.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_as_oned_writes_it() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_764_050_000), "Tue Nov 25 05:53:20 2025");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn templates_sorted_and_in_cdata() {
        let mut t = parse_template("name = x\nB = [ z = \"1\", a = \"\" ]\n").unwrap();
        t.single("A", "v]]>w");
        assert_eq!(
            template_xml("TEMPLATE", &t),
            "<TEMPLATE><A><![CDATA[v]]]]><![CDATA[>w]]></A><B><A/><Z><![CDATA[1]]></Z></B>\
             <NAME><![CDATA[x]]></NAME></TEMPLATE>"
        );
        let mut m = t.clone();
        update(&mut m, parse_template("A = 1\nC = 2").unwrap(), true);
        assert_eq!(get(&m, "A"), Some("1"));
        assert_eq!(get(&m, "NAME"), Some("x"));
        update(&mut m, parse_template("C = 3").unwrap(), false);
        assert_eq!(m.attributes.len(), 1);
    }
}
