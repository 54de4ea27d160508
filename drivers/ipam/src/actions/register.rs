//! `register_address_range`: the range's flexible IP created (or found
//! again by its registration token), tagged as ours, its private /31
//! allocated, the range answered to oned.

use super::*;

/// `register_address_range`: one flexible IP, one private block, one AR.
pub fn register(d: &mut Driver<'_, '_>, request: &IpamRequest) -> anyhow::Result<Output> {
    let s = settings(request)?;
    let (client, credentials) = connect(d, &s)?;
    let zone = match &s.zone {
        Some(z) => z.clone(),
        None => credentials.require_zone()?.clone(),
    };
    let project = credentials.require_project()?.to_owned();
    let token = tags::new_token().context("cannot make a registration token")?;
    let store = Store::new(state_path(d.env));

    // 0. Repair registrations that crashed half-way: their flexible IP (found by
    //    token) is deleted and their reservation forgotten.
    let crashed = store.update(
        || rebuild(&client, &zone, &project),
        |state| Ok::<_, anyhow::Error>(state.crashed()),
    )?;
    for old in &crashed {
        let tag = format!("{}{old}", tags::TOKEN);
        let filter = FipFilter {
            project_id: Some(project.clone()),
            tags: vec![tag],
            ..FipFilter::default()
        };
        for fip in client.list_fips(&zone, &filter)? {
            client.delete_fip(&zone, &fip.id, &project)?;
            d.log.info(format_args!(
                "released flexible IP {} of a registration that crashed",
                fip.ip_address
            ));
        }
        store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |state| {
                state.forget_pending(old);
                Ok(())
            },
        )?;
    }

    // 1. Reserve the registration (and the private block of an IPv4 range),
    //    before anything exists at Scaleway.
    let pending = Allocation {
        phase: Phase::Pending,
        token: token.clone(),
        zone: zone.to_string(),
        fip_id: None,
        external_ip: None,
        since: now(),
        owner: crate::alloc::Owner::me(),
    };
    let cidr = s.private_cidr;
    let ipv6 = s.ipv6;
    let block = store.update(
        || rebuild(&client, &zone, &project),
        |state| {
            if ipv6 {
                state.unblocked.insert(token.clone(), pending);
                return Ok(None);
            }
            let block = cidr.first_free(&state.taken()).ok_or_else(|| {
                anyhow!(
                    "PRIVATE_CIDR {cidr} is exhausted ({} ranges): give this range a larger or another PRIVATE_CIDR",
                    cidr.capacity()
                )
            })?;
            state.blocks.insert(block, pending);
            Ok(Some(block))
        },
    )?;
    let release_block = |log: &mut Log<'_>| {
        let freed = store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |state| {
                state.forget_pending(&token);
                Ok(())
            },
        );
        if let Err(e) = freed {
            log.error(format_args!(
                "could not free the reservation of this registration: {e:#}"
            ));
        }
    };

    // 2. The flexible IP, tagged with the token so an ambiguous create is found, not repeated.
    let block_text = block.map(|b| b.cidr()).unwrap_or_default();
    let new = NewFlexibleIp {
        project_id: project.clone(),
        description: "OpenNebula address range (one-scaleway)".to_owned(),
        tags: tags::for_range(
            &token,
            &block_text,
            s.provision_id.as_deref(),
            s.scaleway_provision.as_deref(),
        ),
        server_id: None,
        is_ipv6: s.ipv6,
    };
    let fip = match client.create_fip(&zone, &new, &format!("{}{token}", tags::TOKEN)) {
        Ok(fip) => fip,
        Err(e) => {
            release_block(d.log);
            return Err(anyhow!(e).context("cannot create the flexible IP for this address range"));
        }
    };
    let undo = {
        let client_zone = zone.clone();
        let project = project.clone();
        let fip_id = fip.id.clone();
        move |client: &Client, log: &mut Log<'_>| match client.delete_fip(&client_zone, &fip_id, &project) {
            Ok(_) => log.info(format_args!("released flexible IP {fip_id}")),
            Err(e) => log.error(format_args!(
                "could not release flexible IP {fip_id}: {e}; `scaleway-ipam gc --delete` will"
            )),
        }
    };

    // 3. The answer, then the block marked active. Any failure from here releases both.
    let answer = (|| -> anyhow::Result<String> {
        let external: IpAddr = fip
            .address()
            .ok_or_else(|| anyhow!("Scaleway returned flexible IP {} without an address", fip.id))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: String| pairs.push((k.to_owned(), v));
        match block {
            Some(b) => {
                push("TYPE", "IP4".into());
                push("IP", b.vm.to_string());
                push("SIZE", "1".into());
                push("GATEWAY", b.gateway.to_string());
                push("NETWORK_MASK", "255.255.255.254".into());
                push("PRIVATE_CIDR", s.private_cidr.to_string());
            }
            None => {
                let IpAddr::V6(prefix) = external else {
                    bail!("Scaleway returned an IPv4 address for an IPv6 flexible IP")
                };
                let p = u128::from(prefix) & !((1u128 << 64) - 1);
                push("TYPE", "IP6_STATIC".into());
                push("IP6", Ipv6Addr::from(p | 2).to_string());
                push("PREFIX_LENGTH", "64".into());
                push("SIZE", "1".into());
                push("GATEWAY6", Ipv6Addr::from(p | 1).to_string());
            }
        }
        push("IPAM_MAD", crate::IPAM_MAD.into());
        push(
            "EXTERNAL_IP",
            match external {
                IpAddr::V4(a) => a.to_string(),
                // The /64's first address: the NIC reads EXTERNAL_IP as an address.
                IpAddr::V6(a) => a.to_string(),
            },
        );
        push("SCALEWAY_IP_ID", fip.id.clone());
        push("SCALEWAY_ZONE", zone.to_string());
        push("SCALEWAY_IP_TYPE", if s.ipv6 { "ipv6" } else { "ipv4" }.into());
        if let Some(p) = &s.profile {
            push("SCALEWAY_PROFILE", p.clone());
        }
        if let Some(p) = &s.provision_id {
            push("PROVISION_ID", p.clone());
        }
        if let Some(p) = &s.scaleway_provision {
            push("SCALEWAY_PROVISION", p.clone());
        }
        // oned replaces the whole range with the answer: everything else the
        // user wrote (DNS, SECURITY_GROUPS, custom attributes) is echoed.
        let owned: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
        pairs.extend(echoed(&request.ar.attrs, &owned));
        let mut t = Template::new();
        t.vector("AR", pairs);
        let text = t.render()?;
        store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |state| {
                let a = match block {
                    Some(b) => state.blocks.get_mut(&b),
                    None => state.unblocked.get_mut(&token),
                }
                .ok_or_else(|| anyhow!("the reservation of this registration vanished from the state file"))?;
                a.phase = Phase::Active;
                a.fip_id = Some(fip.id.clone());
                a.external_ip = Some(external.to_string());
                a.owner = None;
                Ok(())
            },
        )?;
        Ok(text)
    })();
    let text = match answer {
        Ok(text) => text,
        Err(e) => {
            undo(&client, d.log);
            release_block(d.log);
            return Err(e.context("cannot register the address range (the flexible IP was released)"));
        }
    };
    d.log.info(format_args!(
        "flexible IP {} ({}) created in {zone}{}",
        fip.ip_address,
        fip.id,
        block.map(|b| format!(", private block {b}")).unwrap_or_default()
    ));
    let store_path = state_path(d.env);
    Ok(Output {
        stdout: text,
        undo_if_undelivered: Some(Box::new(move |log| {
            undo(&client, log);
            Store::new(store_path).update(
                || Ok::<_, anyhow::Error>(State::default()),
                |state| {
                    state.blocks.retain(|_, a| a.token != token);
                    state.unblocked.remove(&token);
                    Ok(())
                },
            )?;
            Ok(())
        })),
    })
}

/// The attributes of the user's range that an answer must carry on: oned
/// replaces the range with the driver's answer, so what is not echoed is lost.
/// What the driver answers itself (`owned`) and what describes the addresses
/// (which the answer defines) are not echoed.
pub(super) fn echoed(request: &opennebula::attr::Attributes, owned: &[String]) -> Vec<(String, String)> {
    const ADDRESSES: [&str; 11] = [
        "TYPE",
        "IP",
        "IP6",
        "SIZE",
        "GATEWAY",
        "GATEWAY6",
        "NETWORK_MASK",
        "PREFIX_LENGTH",
        "GLOBAL_PREFIX",
        "ULA_PREFIX",
        "ADDRESS",
    ];
    request
        .iter()
        .filter(|(k, _)| !ADDRESSES.contains(k) && !owned.iter().any(|o| o == k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
