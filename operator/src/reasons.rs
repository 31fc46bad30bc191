//! Condition reasons the operator writes, also used as Event reasons.
//!
//! Condition types (`bgpvpn_crds::conditions::types`): `Valid`, `Conflict`, `Ready` on both
//! `BGPVPN` and `VNIBinding`.
//!
//! | kind | type | status | reason | when |
//! |---|---|---|---|---|
//! | both | Valid | True | `Valid` | the spec passed validation |
//! | both | Valid | False | `Invalid` | spec errors; for a BGPVPN also an edit of `spec.vni` after it was programmed (the programmed VNI stays) |
//! | BGPVPN | Conflict | True | `VNIConflict` | another BGPVPN has the VNI and wins (already programmed with it, else older, else name) |
//! | BGPVPN | Conflict | True | `RouteDistinguisherConflict` | another BGPVPN has the same first route distinguisher and wins |
//! | VNIBinding | Conflict | True | `PodConflict` | a pod is also selected by a binding of another BGPVPN (the oldest binding keeps it) |
//! | both | Conflict | False | `NoConflict` | |
//! | both | Ready | True | `Programmed` | every node hosting endpoints reports them programmed |
//! | BGPVPN | Ready | True | `NoEndpoints` | nothing bound, so nothing to program |
//! | both | Ready | False | `NodesNotReady` | endpoints resolved; waiting for the agents (or a node has no EVPNNodeState) |
//! | both | Ready | False | `Invalid`, `VNIConflict`, `RouteDistinguisherConflict`, `NotSupported` | nothing programmed for it |
//! | VNIBinding | Ready | False | `BGPVPNNotFound` | waits for the BGPVPN to exist |
//! | VNIBinding | Ready | False | `NotAllowed` | the BGPVPN's `allowedNamespaces` (`all`, `names`, label `selector`) does not admit the namespace |
//! | VNIBinding | Ready | False | `BGPVPNNotReady` | the BGPVPN exists but is not programmed (invalid, conflict, not supported) |
//! | VNIBinding | Ready | False | `KuryrNotInstalled` | a Neutron target without the Kuryr CRDs |
//! | VNIBinding | Ready | False | `TargetNotFound` | no KuryrNetwork / KuryrPort carries the Neutron id |
//! | VNIBinding | Ready | False | `NoEndpoints` | the target resolved to no Running pod with an address |
//! | VNIBinding | PrefixesAllowed | True | `PrefixesAllowed` | every `advertisePrefixes` entry may be advertised |
//! | VNIBinding | PrefixesAllowed | False | `PrefixNotAllowed` | entries left out (named in the message): outside the BGPVPN's `allowedPrefixes`, another binding's pod address, or never advertised (default route, link-local, multicast, loopback, unspecified) |
//! | VNIBinding | WithinLimits | True | `WithinLimits` | nothing of the binding is left out for a limit |
//! | VNIBinding | Ready | False | `BGPVPNNotReady` | also when the BGPVPN cannot be read (a value its type cannot hold) |
//! | VNIBinding | WithinLimits | False | `BGPVPNPrefixLimit` | the BGPVPN's bindings already advertise `MAX_BGPVPN_PREFIXES` prefixes (older bindings first); the rest of this one is left out |

pub const VALID: &str = "Valid";
pub const INVALID: &str = "Invalid";
pub const NO_CONFLICT: &str = "NoConflict";
pub const VNI_CONFLICT: &str = "VNIConflict";
pub const RD_CONFLICT: &str = "RouteDistinguisherConflict";
pub const POD_CONFLICT: &str = "PodConflict";
pub const NOT_SUPPORTED: &str = "NotSupported";
pub const PROGRAMMED: &str = "Programmed";
pub const NO_ENDPOINTS: &str = "NoEndpoints";
pub const NODES_NOT_READY: &str = "NodesNotReady";
pub const BGPVPN_NOT_FOUND: &str = "BGPVPNNotFound";
pub const NOT_ALLOWED: &str = "NotAllowed";
pub const BGPVPN_NOT_READY: &str = "BGPVPNNotReady";
pub const KURYR_NOT_INSTALLED: &str = "KuryrNotInstalled";
pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
pub const PREFIXES_ALLOWED: &str = "PrefixesAllowed";
pub const PREFIX_NOT_ALLOWED: &str = "PrefixNotAllowed";
pub const WITHIN_LIMITS: &str = "WithinLimits";
pub const BGPVPN_PREFIX_LIMIT: &str = "BGPVPNPrefixLimit";
/// An object of a watched kind that could not be read in full (a Kuryr object with malformed
/// parts, or any object that does not decode at all and is left out): an Event, and for a
/// BGPVPN or VNIBinding that does not decode, its `Valid` and `Ready` reason.
pub const MALFORMED_OBJECT: &str = "MalformedObject";

/// Reasons worth a Warning event when a condition enters them.
pub fn is_warning(reason: &str) -> bool {
    matches!(
        reason,
        INVALID
            | VNI_CONFLICT
            | RD_CONFLICT
            | POD_CONFLICT
            | NOT_SUPPORTED
            | BGPVPN_NOT_FOUND
            | NOT_ALLOWED
            | BGPVPN_NOT_READY
            | KURYR_NOT_INSTALLED
            | TARGET_NOT_FOUND
            | PREFIX_NOT_ALLOWED
            | BGPVPN_PREFIX_LIMIT
    )
}
