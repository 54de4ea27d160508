//! Our two nftables tables as the host record says they are.
//!
//! Listing a table costs time that grows with its elements (`nft` 1.0.6
//! reads every element of the table even for one key), so `pre` and
//! `clean` do not list them: they plan against this model, built from the
//! endpoints the record holds, and the transaction itself checks the model
//! against the kernel. Additions are idempotent and deletions are rendered
//! as an addition then a deletion, so an element the model has wrong makes
//! no difference, except one that maps a key elsewhere: then the kernel
//! refuses the whole transaction ("File exists"), as it does when a table
//! or set is missing ("No such file or directory": the host rebooted),
//! and the action reads the tables and plans again.

use crate::endpoint::Endpoint;
use crate::guard::{GuardState, elements};
use crate::needs::objects;
use crate::observed::{NatState, simulate_nft};
use crate::ops::{NftBatch, NftOp};

/// Both tables as declaring their base and adding the elements of
/// `endpoints` to empty tables makes them; `None` when the endpoints
/// conflict with each other (a damaged record: read the tables instead).
///
/// Give it the endpoints the record holds that the action does not
/// ensure: the ones it ensures are left out, so their elements are always
/// added again (after a reboot, or an element deleted by hand).
pub fn tables<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> Option<(NatState, GuardState)> {
    let endpoints: Vec<&Endpoint> = endpoints.into_iter().collect();
    let mut ops = vec![NftOp::EnsureBase, NftOp::EnsureGuard];
    for e in &endpoints {
        if let Some((external, ip)) = objects(e).nat {
            ops.push(NftOp::AddDnat { external, ip });
            ops.push(NftOp::AddSnat { ip, external });
        }
    }
    ops.extend(elements(endpoints.iter().copied()).into_iter().map(NftOp::AddGuard));
    let (mut nat, mut guard) = (NatState::default(), GuardState::default());
    let mut filter = crate::filter::FilterState::default();
    simulate_nft(&mut nat, &mut guard, &mut filter, &NftBatch { ops }).ok()?;
    Some((nat, guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{BridgeName, Owner, Port, Public};
    use crate::ops::NFT_DNAT_MAP;

    fn endpoint(vm: u64, n: u8, external: u8) -> Endpoint {
        Endpoint {
            owner: Owner {
                vm,
                nic_id: 0,
                alias: None,
            },
            bridge: BridgeName::parse("scwpub0").unwrap(),
            public: Public::V4 {
                ip: [172, 30, 0, 2 * n].into(),
                gateway: [172, 30, 0, 2 * n + 1].into(),
                external: [198, 51, 100, external].into(),
            },
            port: Some(Port {
                tap: BridgeName::parse(&format!("one-{vm}-0")).unwrap(),
                mac: [2, 0, 0, 0, 0, n],
            }),
        }
    }

    /// Whether both tables' bases are this version's.
    fn base_ok(nat: NatState, guard: GuardState) -> bool {
        let observed = crate::Observed {
            nat,
            guard,
            filter: crate::filter::FilterState::model(&[], []),
            ..crate::Observed::default()
        };
        crate::plan::tables_ok_after(&observed, &crate::Plan::default())
    }

    #[test]
    fn the_model_is_what_applying_the_record_makes() {
        let (a, b) = (endpoint(1, 1, 1), endpoint(2, 2, 2));
        let (nat, guard) = tables([&a, &b]).unwrap();
        assert!(base_ok(nat.clone(), guard.clone()));
        assert_eq!(
            nat.get(NFT_DNAT_MAP, [198, 51, 100, 2].into()),
            Some([172, 30, 0, 4].into())
        );
        assert_eq!(guard.elements, elements([&a, &b]));
        let (nat, guard) = tables([]).unwrap();
        assert!(base_ok(nat.clone(), guard.clone()));
        assert!(guard.elements.is_empty());
        // Two recorded endpoints with one flexible IP: no model.
        assert_eq!(tables([&a, &endpoint(3, 3, 1)]), None);
    }
}
