//! Private /31 blocks for public ranges, never handed out twice.
//!
//! Every flexible IP reaches its VM through a private /31: the VM's address
//! (the even one) and its gateway (the odd one, answered by the host with
//! proxy ARP). Blocks come from the range's `PRIVATE_CIDR`; which blocks are
//! taken is kept in one state file on the frontend, read and written under
//! an exclusive lock and replaced atomically (write, fsync, rename), so two
//! registrations at once, or a crash at any point, never give one block to
//! two ranges. A block is reserved (`pending`) before its flexible IP is
//! created and marked `active` once it exists; the flexible IP carries the
//! block in its tags, so the file can be rebuilt from Scaleway if it is lost.
//!
//! The planning part ([`PrivateCidr::first_free`]) is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use opennebula::store::{FileLock, StateFile, VERSION, Versioned, Wait};
use serde::{Deserialize, Serialize};

/// The default `PRIVATE_CIDR`: 32,766 blocks, outside Scaleway's automatic
/// private network subnets (172.16.0.0/16) and the cluster's private
/// network default (172.18.0.0/24).
pub const DEFAULT_PRIVATE_CIDR: &str = "172.30.0.0/16";

/// Private ranges a `PRIVATE_CIDR` must lie in (RFC 1918 and RFC 6598).
const PRIVATE_SPACES: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
];

/// A validated `PRIVATE_CIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateCidr(Ipv4Network);

/// One /31: the VM's address and its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block {
    pub vm: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

impl Block {
    /// The block that holds `address`.
    pub fn containing(address: Ipv4Addr) -> Self {
        let base = u32::from(address) & !1;
        Self {
            vm: Ipv4Addr::from(base),
            gateway: Ipv4Addr::from(base | 1),
        }
    }

    /// `a.b.c.d/31`.
    pub fn cidr(&self) -> String {
        format!("{}/31", self.vm)
    }

    /// Parses `a.b.c.d/31` with an even `a.b.c.d`.
    pub fn parse(text: &str) -> Option<Self> {
        let (ip, len) = text.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        (len == "31" && u32::from(ip) & 1 == 0).then(|| Self::containing(ip))
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cidr())
    }
}

impl PrivateCidr {
    /// Parses and checks a `PRIVATE_CIDR`: IPv4 CIDR notation, no host
    /// bits, inside a private range, and large enough for at least two blocks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let shown = opennebula::attr::show(text);
        let net: Ipv4Network = text.trim().parse().map_err(|_| {
            format!("PRIVATE_CIDR = {shown} is not an IPv4 network in CIDR notation (like {DEFAULT_PRIVATE_CIDR})")
        })?;
        if !text.contains('/') {
            return Err(format!(
                "PRIVATE_CIDR = {shown} needs a prefix length (like {DEFAULT_PRIVATE_CIDR})"
            ));
        }
        if net.ip() != net.network() {
            return Err(format!(
                "PRIVATE_CIDR = {shown} has host bits set: did you mean {}/{}?",
                net.network(),
                net.prefix()
            ));
        }
        if net.prefix() > 29 {
            return Err(format!(
                "PRIVATE_CIDR = {shown} is too small: a /{} leaves no /31 besides its first and last; use /29 or larger",
                net.prefix()
            ));
        }
        let private = PRIVATE_SPACES
            .iter()
            .any(|(ip, len)| Ipv4Network::new(*ip, *len).is_ok_and(|space| space.is_supernet_of(net)));
        if !private {
            return Err(format!(
                "PRIVATE_CIDR = {shown} is not private address space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10)"
            ));
        }
        Ok(Self(net))
    }

    pub fn network(&self) -> Ipv4Network {
        self.0
    }

    /// Usable blocks: all /31s but the first and the last (they hold the
    /// network's own and broadcast addresses, which some guests refuse).
    pub fn capacity(&self) -> u32 {
        (self.0.size() / 2).saturating_sub(2)
    }

    /// Whether `block` is one of this network's usable blocks.
    pub fn holds(&self, block: Block) -> bool {
        self.0.contains(block.vm) && block.vm != self.0.network() && block.gateway != self.0.broadcast()
    }

    /// The lowest usable block not in `taken` (pure).
    pub fn first_free(&self, taken: &BTreeSet<Block>) -> Option<Block> {
        let first = u32::from(self.0.network()) + 2;
        (0..self.capacity())
            .map(|i| Block::containing(Ipv4Addr::from(first + 2 * i)))
            .find(|b| !taken.contains(b))
    }
}

impl fmt::Display for PrivateCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a block is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reserved; its flexible IP may or may not exist yet.
    Pending,
    /// Its flexible IP exists and backs a range.
    Active,
}

/// One taken block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub phase: Phase,
    /// The registration token (a tag on the flexible IP).
    pub token: String,
    pub zone: String,
    pub fip_id: Option<String>,
    pub external_ip: Option<String>,
    /// Seconds since the epoch when it was reserved.
    pub since: u64,
    /// The process registering it, while `pending`: if it is gone, the
    /// registration crashed and the next one repairs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// A process, by pid and start time (so a reused pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: start time, in clock ticks after boot.
    pub started: u64,
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub fn me() -> Option<Self> {
        let pid = std::process::id();
        Some(Self {
            pid,
            started: start_time(pid)?,
        })
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.started)
    }
}

/// The state file's content: every taken block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub blocks: BTreeMap<Block, Allocation>,
    /// Ranges without a private block (IPv6), by registration token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unblocked: BTreeMap<String, Allocation>,
}

impl Versioned for State {
    fn version(&self) -> u32 {
        self.version
    }
}

impl Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.cidr())
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Block::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a /31 block")))
    }
}

impl State {
    pub fn taken(&self) -> BTreeSet<Block> {
        self.blocks.keys().copied().collect()
    }

    /// Every registration, with or without a block.
    pub fn all(&self) -> impl Iterator<Item = &Allocation> {
        self.blocks.values().chain(self.unblocked.values())
    }

    /// The tokens of pending registrations whose process is gone: they
    /// crashed between reserving and finishing.
    pub fn crashed(&self) -> Vec<String> {
        self.all()
            .filter(|a| a.phase == Phase::Pending && a.owner.is_some_and(|o| !o.is_alive()))
            .map(|a| a.token.clone())
            .collect()
    }

    /// Forgets the pending registration `token` (block or not).
    pub fn forget_pending(&mut self, token: &str) {
        self.blocks
            .retain(|_, a| !(a.phase == Phase::Pending && a.token == token));
        self.unblocked.retain(|t, a| !(a.phase == Phase::Pending && t == token));
    }

    /// The block registered under `token`, if any.
    pub fn by_token(&self, token: &str) -> Option<(Block, &Allocation)> {
        self.blocks.iter().find(|(_, a)| a.token == token).map(|(b, a)| (*b, a))
    }
}

/// A problem with the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for String {
    fn from(e: StoreError) -> Self {
        e.0
    }
}

/// The state file, and the lock that guards it
/// ([`opennebula::store`]).
#[derive(Debug, Clone)]
pub struct Store {
    file: StateFile,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            file: StateFile::new(
                path,
                0o600,
                "the address state",
                "move it aside and run `scaleway-ipam rebuild-state` to rebuild it from Scaleway",
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path().to_path_buf().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Runs `f` on the state under the exclusive lock, and saves what it
    /// leaves if it succeeds. A missing file is built by `rebuild` first
    /// (from Scaleway's tags); a corrupt one is refused.
    pub fn update<T, E: From<StoreError>>(
        &self,
        rebuild: impl FnOnce() -> Result<State, E>,
        f: impl FnOnce(&mut State) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock = FileLock::acquire(&self.lock_path(), Wait::Forever).map_err(|e| E::from(StoreError(e.message)))?;
        let (mut state, existed) = match self.file.load::<State>().map_err(|e| E::from(StoreError(e.message)))? {
            Some(state) => (state, true),
            None => (rebuild()?, false),
        };
        let before = state.clone();
        let out = f(&mut state)?;
        if state != before || !existed {
            state.version = VERSION;
            self.file.save(&state).map_err(|e| E::from(StoreError(e.message)))?;
        }
        drop(lock);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
