//! The node's underlay BGP sessions as FRR reports them (`show bgp neighbors json`), parsed once
//! into typed values; the status, the metrics and the log work on these.

use serde::Deserialize;

/// FRR's name of the state in which a session carries routes.
pub const ESTABLISHED: &str = "Established";

/// One BGP session of the default instance (the underlay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpSession {
    /// The neighbor's address, or the interface of an unnumbered session (FRR's key).
    pub peer: String,
    pub remote_asn: Option<u32>,
    /// `Established`, `Active`, `Connect`, `Idle`, `OpenSent`, `OpenConfirm`, ...
    pub state: String,
    /// Unix time the session came up, while it is established.
    pub established_epoch: Option<i64>,
    /// EVPN routes accepted from the neighbor.
    pub prefixes_received: u32,
    /// BFD's state for the session, when BFD is on for it.
    pub bfd: Option<String>,
    /// Why the session was last reset (FRR's words), if it ever was.
    pub last_reset: Option<String>,
}

impl BgpSession {
    pub fn established(&self) -> bool {
        self.state == ESTABLISHED
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireNeighbor {
    remote_as: Option<u32>,
    bgp_state: String,
    bgp_timer_up_established_epoch: Option<i64>,
    last_reset_due_to: Option<String>,
    #[serde(default)]
    address_family_info: WireFamilies,
    peer_bfd_info: Option<WireBfd>,
}

#[derive(Deserialize, Default)]
struct WireFamilies {
    #[serde(rename = "l2VpnEvpn")]
    l2vpn_evpn: Option<WireFamily>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFamily {
    #[serde(default)]
    accepted_prefix_counter: u32,
}

#[derive(Deserialize)]
struct WireBfd {
    status: Option<String>,
}

/// Longest text taken from FRR into a status field.
const MAX_TEXT: usize = 128;

/// FRR's text, bounded and printable, for a status field.
fn text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_TEXT).collect()
}

/// The sessions of `show bgp neighbors json`, sorted by peer; `None` when the output is not
/// that JSON (FRR not answering, an error text). A neighbor FRR describes in a shape this
/// does not know is left out rather than failing the others.
pub fn parse_bgp_sessions(out: &str) -> Option<Vec<BgpSession>> {
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(out.trim()).ok()?;
    let mut sessions: Vec<BgpSession> = json
        .into_iter()
        .filter_map(|(peer, value)| {
            let n: WireNeighbor = serde_json::from_value(value).ok()?;
            let state = text(&n.bgp_state);
            Some(BgpSession {
                peer: text(&peer),
                remote_asn: n.remote_as,
                established_epoch: n.bgp_timer_up_established_epoch.filter(|_| state == ESTABLISHED),
                state,
                prefixes_received: n
                    .address_family_info
                    .l2vpn_evpn
                    .map_or(0, |f| f.accepted_prefix_counter),
                bfd: n.peer_bfd_info.and_then(|b| b.status).map(|s| text(&s)),
                last_reset: n.last_reset_due_to.map(|s| text(&s)),
            })
        })
        .collect();
    sessions.sort_by(|a, b| a.peer.cmp(&b.peer));
    Some(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frr_10_3s_neighbors() {
        // FRR 10.3 in the node guest: one session up with BFD, one neighbor that never answers
        let up = parse_bgp_sessions(include_str!("testdata/frr-10.3-bgp-neighbors-up.json")).unwrap();
        assert_eq!(
            up,
            [
                BgpSession {
                    peer: "172.30.0.2".into(),
                    remote_asn: Some(64999),
                    state: "Established".into(),
                    established_epoch: Some(1796190862),
                    prefixes_received: 0,
                    bfd: Some("Up".into()),
                    last_reset: Some("BFD down received".into()),
                },
                BgpSession {
                    peer: "172.30.0.9".into(),
                    remote_asn: Some(64998),
                    state: "Active".into(),
                    established_epoch: None,
                    prefixes_received: 0,
                    bfd: None,
                    last_reset: Some("Waiting for peer OPEN".into()),
                },
            ]
        );
        // the same after the peer shut the first session down
        let down =
            parse_bgp_sessions(include_str!("testdata/frr-10.3-bgp-neighbors-peer-shutdown.json")).unwrap();
        assert_eq!(down[0].state, "Active");
        assert!(!down[0].established());
        assert_eq!(down[0].established_epoch, None);
        assert_eq!(down[0].last_reset.as_deref(), Some("BGP Notification received"));
    }

    #[test]
    fn anything_else_is_not_a_session_list() {
        for bad in ["", "% Unknown command", "[]", "zebra is not running"] {
            assert_eq!(parse_bgp_sessions(bad), None, "{bad:?}");
        }
        assert_eq!(parse_bgp_sessions("{}"), Some(vec![]));
        // a neighbor in an unknown shape is left out, the others stay
        let mixed = r#"{"10.0.0.1": {"bgpState": "Idle"}, "10.0.0.2": "odd",
                        "10.0.0.3": {"bgpState": "Established\u0007", "addressFamilyInfo": {"l2VpnEvpn": {"acceptedPrefixCounter": 7}}}}"#;
        let s = parse_bgp_sessions(mixed).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].state.as_str(), s[1].prefixes_received), ("Established", 7));
    }
}
