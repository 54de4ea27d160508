//! The side effects of the private network driver `scaleway_evpn` on a
//! host, behind traits ([`apply`]): `ip`, `nft`, `vtysh -C` and
//! `frr-reload.py`, `/proc/sys`; the security group tables ([`filters`]);
//! the root helper's requests ([`root`]); the record of what the driver
//! applied ([`record`]); a `fake::FakeHost` for tests (feature `fake`,
//! never in a release binary). What they apply is planned and rendered by
//! `private_plan`; the host lock and the tool runner are `host_tools`'s.

pub mod apply;
/// A fake host for tests: compiled into test builds only (feature `fake`).
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod filters;
pub mod record;
pub mod root;
