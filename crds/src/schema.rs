//! Schema fragments shared by the kinds: the regular expressions and limits the API server
//! enforces, kept next to each other so the code-side checks in [`crate::validate`] use the same.

/// Route target / route distinguisher: `ASN:nn` or `IPv4:nn` (RFC 4364 type 0, 1, 2). Number
/// ranges are checked in code; the pattern keeps newlines and FRR syntax out.
pub const RT_RD_PATTERN: &str = r"^([0-9]{1,10}|([0-9]{1,3}\.){3}[0-9]{1,3}):[0-9]{1,10}$";
/// `255.255.255.255:65535` is the longest valid form.
pub const RT_RD_MAX_LEN: u32 = 21;
/// Route targets per list (import, export or both).
pub const MAX_ROUTE_TARGETS: u32 = 32;
/// Route distinguishers per BGPVPN (networking-bgpvpn allows a list; one is used per VRF).
pub const MAX_ROUTE_DISTINGUISHERS: u32 = 8;

/// VXLAN network identifier: 24 bits, 0 is reserved.
pub const VNI_MIN: u32 = 1;
pub const VNI_MAX: u32 = 16_777_215;

/// A Neutron resource id (UUID, any case).
pub const UUID_PATTERN: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
pub const UUID_LEN: u32 = 36;

/// RFC 1123 subdomain (names of BGPVPNs and Nodes).
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
pub const DNS_SUBDOMAIN_MAX_LEN: u32 = 253;

/// RFC 1123 label (names of namespaces).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub const DNS_LABEL_MAX_LEN: u32 = 63;
/// Namespaces a BGPVPN may admit by name.
pub const MAX_NAMESPACE_NAMES: u32 = 1024;

/// An IPv4 or IPv6 address (shape only; parsed in code).
pub const IP_PATTERN: &str = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]{2,45})$";
pub const IP_MAX_LEN: u32 = 45;
/// An IPv4 or IPv6 prefix in CIDR notation (shape only; parsed in code).
pub const CIDR_PATTERN: &str = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]{2,45})/[0-9]{1,3}$";
pub const CIDR_MAX_LEN: u32 = 49;
/// Extra prefixes a binding may advertise.
pub const MAX_ADVERTISED_PREFIXES: u32 = 64;
/// Distinct prefixes the bindings of one BGPVPN advertise together; the rest is left out, newest
/// bindings first. Well under [`MAX_STATUS_ITEMS`], the most prefixes one VNI of an
/// EVPNNodeState holds, so no BGPVPN can make a node's object unwritable.
pub const MAX_BGPVPN_PREFIXES: u32 = 1024;
/// Entries of a BGPVPN's `allowedPrefixes`.
pub const MAX_ALLOWED_PREFIXES: u32 = 256;

/// Linux interface names: at most 15 bytes, no `/`, whitespace or `:`.
pub const IFNAME_PATTERN: &str = r"^[A-Za-z0-9_.-]{1,15}$";
pub const IFNAME_MAX_LEN: u32 = 15;

/// Keeps a status list from growing without bound.
pub const MAX_STATUS_ITEMS: u32 = 4096;

/// CEL for one RT/RD string of [`RT_RD_PATTERN`]'s shape: the number ranges of RFC 4364's three
/// types (type 0 `ASN2:nn4`, type 1 `IPv4:nn2`, type 2 `ASN4:nn2`), AS 0 (RFC 7607) and 0.0.0.0
/// refused, as `validate::parse_rt_rd` does.
const RT_RD_RULE: &str = "self.split(':').size() == 2 && (self.split(':')[0].contains('.') \
    ? (isIP(self.split(':')[0]) && ip(self.split(':')[0]).family() == 4 \
       && self.split(':')[0] != '0.0.0.0' && int(self.split(':')[1]) <= 65535) \
    : (int(self.split(':')[0]) >= 1 && int(self.split(':')[0]) <= 4294967295 \
       && int(self.split(':')[1]) <= (int(self.split(':')[0]) <= 65535 ? 4294967295 : 65535)))";
const RT_RD_MESSAGE: &str = "must be ASN2:0..4294967295, IPv4:0..65535 or ASN4:0..65535 (AS 1..4294967295, \
    IPv4 not 0.0.0.0; RFC 4364)";

/// A VNI the operator has programmed (`status.programmedVni`) never changes: the VRFs of every
/// node were made for it. Before that, an edit is a correction.
const VNI_ONCE_PROGRAMMED_RULE: &str = "!has(oldSelf.status) || !has(oldSelf.status.programmedVni) \
    || self.spec.vni == oldSelf.spec.vni";

/// Adds the CEL rules (`x-kubernetes-validations`) that the schema attributes cannot say, to
/// the generated schema of `kind`. What CEL cannot see (other objects: VNI uniqueness, pods) stays
/// in [`crate::validate`].
pub fn add_validation_rules(kind: &str, schema: &mut serde_json::Value) {
    use serde_json::json;
    let rule = |rule: &str, message: &str| json!([{"rule": rule, "message": message}]);
    let mut items_rule = |path: &[&str], rule: serde_json::Value| {
        let mut at = &mut *schema;
        for key in path {
            at = at
                .get_mut("properties")
                .and_then(|p| p.get_mut(*key))
                .unwrap_or_else(|| panic!("{kind}: no property {key} in the schema (path {path:?})"));
        }
        at["items"]["x-kubernetes-validations"] = rule;
    };
    match kind {
        "BGPVPN" => {
            for list in [
                "routeTargets",
                "importTargets",
                "exportTargets",
                "routeDistinguishers",
            ] {
                items_rule(&["spec", list], rule(RT_RD_RULE, RT_RD_MESSAGE));
            }
            items_rule(
                &["spec", "allowedPrefixes"],
                rule(
                    "isCIDR(self)",
                    "must be a prefix in CIDR notation (address/length)",
                ),
            );
            schema["x-kubernetes-validations"] = rule(
                VNI_ONCE_PROGRAMMED_RULE,
                "spec.vni cannot change once it is programmed (status.programmedVni): make another BGPVPN",
            );
        }
        "VNIBinding" => items_rule(
            &["spec", "advertisePrefixes"],
            rule(
                "isCIDR(self)",
                "must be a prefix in CIDR notation (address/length)",
            ),
        ),
        _ => {}
    }
}
