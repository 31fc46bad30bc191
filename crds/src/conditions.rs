//! Condition helpers shared by the operator and the agent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types used across the kinds.
pub mod types {
    /// Everything asked for is programmed (BGPVPN, VNIBinding, EVPNNodeState).
    pub const READY: &str = "Ready";
    /// The spec passed validation.
    pub const VALID: &str = "Valid";
    /// The BGPVPN / binding clashes with another object (VNI, pod selected twice).
    pub const CONFLICT: &str = "Conflict";
    /// The last FRR configuration apply succeeded (EVPNNodeState).
    pub const FRR_APPLIED: &str = "FrrApplied";
    /// Every underlay BGP session of the node is established (EVPNNodeState).
    pub const BGP_ESTABLISHED: &str = "BgpEstablished";
    /// The kernel devices, routes and rules match the spec (EVPNNodeState).
    pub const DATAPLANE_PROGRAMMED: &str = "DataplaneProgrammed";
    /// The object mirrors a Neutron resource and the last sync succeeded.
    pub const SYNCED: &str = "Synced";
    /// Every prefix the binding asks to advertise is allowed by its BGPVPN (VNIBinding).
    pub const PREFIXES_ALLOWED: &str = "PrefixesAllowed";
    /// Nothing of the binding is left out for a per-BGPVPN limit (VNIBinding).
    pub const WITHIN_LIMITS: &str = "WithinLimits";
}

/// `True` / `False` as the API spells them.
pub fn status_str(ok: bool) -> &'static str {
    if ok { "True" } else { "False" }
}

/// A new condition; `lastTransitionTime` is `now` unless [`upsert`] keeps an older one.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status_str(ok).to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Puts `new` into `conditions`, replacing the one of the same type. The previous
/// `lastTransitionTime` is kept when the status did not change, so the time says when the
/// condition last flipped rather than when it was last written.
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Merges `fresh` into `previous` with [`upsert`] and returns the result, sorted by type so the
/// written list does not change order between reconciles.
pub fn merged(previous: &[Condition], fresh: Vec<Condition>) -> Vec<Condition> {
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|c| fresh.iter().any(|f| f.type_ == c.type_))
        .cloned()
        .collect();
    for c in fresh {
        upsert(&mut out, c);
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of a type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = vec![condition(
            types::READY,
            true,
            "Programmed",
            "ok",
            Some(1),
            &at(100),
        )];
        let again = merged(
            &first,
            vec![condition(
                types::READY,
                true,
                "Programmed",
                "still ok",
                Some(2),
                &at(200),
            )],
        );
        assert_eq!(again[0].last_transition_time, at(100));
        assert_eq!(again[0].message, "still ok");
        let flipped = merged(
            &again,
            vec![condition(types::READY, false, "Failed", "x", Some(3), &at(300))],
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
    }

    #[test]
    fn merged_drops_types_no_longer_reported_and_sorts() {
        let prev = vec![
            condition("Zeta", true, "A", "", None, &at(1)),
            condition("Alpha", true, "A", "", None, &at(1)),
        ];
        let out = merged(
            &prev,
            vec![
                condition("Zeta", true, "A", "", None, &at(2)),
                condition("Beta", false, "B", "", None, &at(2)),
            ],
        );
        let types: Vec<_> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Beta", "Zeta"]);
    }
}
