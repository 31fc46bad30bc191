//! What each bound binding advertises of its `advertisePrefixes`. A tenant does not choose what
//! a node announces, nor fill a node's object:
//!
//! 1. Never advertised: a default route, a prefix overlapping an unspecified, loopback,
//!    link-local, multicast or broadcast range ([`Cidr::never_advertised`]), and the host
//!    prefix of a pod that another binding of the same VNI holds.
//! 2. Allowed: the host prefix of one of the binding's own endpoints, and any prefix within one
//!    of the BGPVPN's `allowedPrefixes` (the admin's; empty allows nothing else).
//! 3. Limited: the bindings of one BGPVPN advertise at most [`MAX_BGPVPN_PREFIXES`] distinct
//!    prefixes together, taken oldest binding first (`creationTimestamp`, then
//!    `namespace/name`), so a newer binding never pushes out what already runs.
//!
//! What is left out is reported on the binding (`PrefixesAllowed`, `WithinLimits`); its other
//! prefixes, and every other binding, are unaffected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use bgpvpn_crds::schema::MAX_BGPVPN_PREFIXES;
use bgpvpn_crds::validate::Cidr;

use super::bindings::{BindVerdict, BindingDecision};
use super::vpns::VpnDecision;
use crate::reasons;

/// Why a prefix of a binding is not advertised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixRefusal {
    #[error("never advertised: {0}")]
    NeverAdvertised(String),
    #[error("the address of pod {pod}, which another binding of the VNI holds")]
    OtherBindingsEndpoint { pod: String },
    #[error("not within spec.allowedPrefixes of BGPVPN {bgpvpn}")]
    NotAllowed { bgpvpn: String },
    #[error(
        "BGPVPN {bgpvpn} already advertises {MAX_BGPVPN_PREFIXES} prefixes, its limit across all bindings (older bindings first)"
    )]
    BgpvpnLimit { bgpvpn: String },
}

impl PrefixRefusal {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PrefixRefusal::BgpvpnLimit { .. } => reasons::BGPVPN_PREFIX_LIMIT,
            _ => reasons::PREFIX_NOT_ALLOWED,
        }
    }
}

/// Fills `prefixes` and `refused_prefixes` of every bound binding; `decisions` is oldest first.
pub fn settle(decisions: &mut [BindingDecision], vpns: &BTreeMap<String, VpnDecision>) {
    let mut holders: HashMap<(u32, IpAddr), Vec<(usize, String)>> = HashMap::new();
    for (i, d) in decisions.iter().enumerate() {
        if let Some(vni) = d.bound_vni() {
            for ep in &d.endpoints {
                holders.entry((vni, ep.ip)).or_default().push((i, ep.pod.clone()));
            }
        }
    }
    let mut advertised: HashMap<String, BTreeSet<Cidr>> = HashMap::new();
    for (i, d) in decisions.iter_mut().enumerate() {
        let BindVerdict::Bound { bgpvpn, vni } = &d.verdict else {
            continue;
        };
        let Some(vpn) = vpns.get(bgpvpn) else {
            continue;
        };
        let own: BTreeSet<IpAddr> = d.endpoints.iter().map(|e| e.ip).collect();
        let used = advertised.entry(bgpvpn.clone()).or_default();
        for prefix in &d.requested_prefixes {
            let refusal = policy(
                prefix,
                &own,
                holders
                    .get(&(*vni, prefix.addr))
                    .map(|h| h.as_slice())
                    .unwrap_or_default(),
                i,
                vpn,
                bgpvpn,
            )
            .or_else(|| {
                (!used.contains(prefix) && used.len() >= MAX_BGPVPN_PREFIXES as usize).then(|| {
                    PrefixRefusal::BgpvpnLimit {
                        bgpvpn: bgpvpn.clone(),
                    }
                })
            });
            match refusal {
                Some(why) => d.refused_prefixes.push((*prefix, why)),
                None => {
                    used.insert(*prefix);
                    d.prefixes.push(*prefix);
                }
            }
        }
    }
}

/// Rules 1 and 2 for one prefix of binding `i`; `holders` hold the prefix's address in the VNI.
fn policy(
    prefix: &Cidr,
    own: &BTreeSet<IpAddr>,
    holders: &[(usize, String)],
    i: usize,
    vpn: &VpnDecision,
    bgpvpn: &str,
) -> Option<PrefixRefusal> {
    if let Some(why) = prefix.never_advertised() {
        return Some(PrefixRefusal::NeverAdvertised(why));
    }
    if *prefix == Cidr::host(prefix.addr) {
        if own.contains(&prefix.addr) {
            return None;
        }
        if let Some((_, pod)) = holders.iter().find(|(j, _)| *j != i) {
            return Some(PrefixRefusal::OtherBindingsEndpoint { pod: pod.clone() });
        }
    }
    let allowed = vpn
        .accepted()
        .map(|(_, valid)| valid.allowed_prefixes.as_slice())
        .unwrap_or_default();
    if allowed.iter().any(|allowed| allowed.contains(prefix)) {
        None
    } else {
        Some(PrefixRefusal::NotAllowed {
            bgpvpn: bgpvpn.to_string(),
        })
    }
}
