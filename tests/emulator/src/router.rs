//! Routes a Scaleway request to its API, after checking the locality.

use serde_json::Value;

use crate::errors::{ApiResult, Reply, bare, invalid};
use crate::input::Query;
use crate::world::{Ctx, EM_ZONES, GW_ZONES, REGIONS, World};

/// A request as the API handlers see it.
pub struct Req<'a> {
    pub method: &'a str,
    /// Path segments after the locality (`["fips", "<id>"]`).
    pub rest: &'a [String],
    pub query: &'a Query,
    /// The JSON body (`Null` when empty).
    pub body: &'a Value,
}

fn check_locality(kind: &str, value: &str, known: &[&str]) -> Result<(), Reply> {
    if known.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            kind,
            "constraint",
            &format!("unknown {kind} {value:?}; known: {}", known.join(", ")),
        ))
    }
}

/// Dispatches `method` on decoded path `segments`.
pub fn dispatch(
    w: &mut World,
    ctx: &mut Ctx,
    method: &str,
    segments: &[String],
    query: &Query,
    body: &Value,
) -> ApiResult {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let req = |n: usize| Req {
        method,
        rest: &segments[n..],
        query,
        body,
    };
    match segs.as_slice() {
        ["flexible-ip", "v1alpha1", "zones", zone, _, ..] => {
            check_locality("zone", zone, &EM_ZONES)?;
            crate::fip::route(w, ctx, zone, &req(4))
        }
        ["baremetal", "v1", "zones", zone, _, ..] => {
            check_locality("zone", zone, &EM_ZONES)?;
            crate::baremetal::route(w, ctx, zone, &req(4))
        }
        ["baremetal", "v3", "zones", zone, _, ..] => {
            check_locality("zone", zone, &EM_ZONES)?;
            crate::bmpn::route(w, ctx, zone, &req(4))
        }
        ["vpc", "v2", "regions", region, _, ..] => {
            check_locality("region", region, &REGIONS)?;
            crate::vpc::route(w, ctx, region, &req(4))
        }
        ["vpc-gw", "v2", "zones", zone, _, ..] => {
            check_locality("zone", zone, &GW_ZONES)?;
            crate::vpcgw::route(w, ctx, zone, &req(4))
        }
        ["ipam", "v1", "regions", region, _, ..] => {
            check_locality("region", region, &REGIONS)?;
            crate::ipam::route(w, ctx, region, &req(4))
        }
        ["iam", "v1alpha1", _, ..] => crate::iam::route(w, ctx, &req(2)),
        _ => Err(bare(404, "Not Found")),
    }
}
