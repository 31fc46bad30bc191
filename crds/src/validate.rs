//! Pure validation of the API objects: the schema rules again (objects may predate the CRD, or
//! come from Neutron rather than the API server, or a CRD without the CEL rules is installed)
//! plus the cross-object rules no schema can express. Nothing that fails here reaches netlink or
//! frr.conf.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::binding::BindingTarget;
use crate::model::RtRd;
use crate::schema::*;
use crate::{BgpvpnSpec, VniBindingSpec, VpnType};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.routeTargets[1]`.
    pub field: String,
    pub message: String,
}

/// All problems found in an object, so a user fixes them in one go.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl ValidationErrors {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn into_result<T>(self, ok: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() { Ok(ok) } else { Err(self) }
    }
}

/// A parsed route target or route distinguisher (RFC 4364 section 4.2 forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteTargetOrDistinguisher {
    /// Type 0: 2-byte ASN, 4-byte number.
    As2(u16, u32),
    /// Type 1: IPv4 address, 2-byte number.
    Ipv4(Ipv4Addr, u16),
    /// Type 2: 4-byte ASN (above 65535), 2-byte number.
    As4(u32, u16),
}

impl fmt::Display for RouteTargetOrDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::As2(asn, n) => write!(f, "{asn}:{n}"),
            Self::Ipv4(ip, n) => write!(f, "{ip}:{n}"),
            Self::As4(asn, n) => write!(f, "{asn}:{n}"),
        }
    }
}

/// Parses `ASN2:nn4`, `IPv4:nn2` or `ASN4:nn2`.
pub fn parse_rt_rd(s: &str) -> Result<RouteTargetOrDistinguisher, String> {
    let (admin, number) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not of the form ASN:nn or IPv4:nn"))?;
    let number_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    if !number_ok {
        return Err(format!(
            "{s:?}: the assigned number {number:?} is not a decimal number"
        ));
    }
    if admin.contains('.') {
        let ip: Ipv4Addr = admin
            .parse()
            .map_err(|_| format!("{s:?}: {admin:?} is not an IPv4 address"))?;
        if ip.is_unspecified() {
            return Err(format!("{s:?}: 0.0.0.0 is not an administrator"));
        }
        let n: u16 = number
            .parse()
            .map_err(|_| format!("{s:?}: with an IPv4 administrator the number must be 0..65535"))?;
        return Ok(RouteTargetOrDistinguisher::Ipv4(ip, n));
    }
    if admin.is_empty() || !admin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?}: the administrator {admin:?} is neither an AS number nor an IPv4 address"
        ));
    }
    let asn: u32 = admin
        .parse()
        .map_err(|_| format!("{s:?}: AS number {admin} is above 4294967295"))?;
    if asn == 0 {
        return Err(format!("{s:?}: AS number 0 is reserved (RFC 7607)"));
    }
    if let Ok(asn2) = u16::try_from(asn) {
        let n: u32 = number
            .parse()
            .map_err(|_| format!("{s:?}: with a 2-byte AS number the number must be 0..4294967295"))?;
        Ok(RouteTargetOrDistinguisher::As2(asn2, n))
    } else {
        let n: u16 = number
            .parse()
            .map_err(|_| format!("{s:?}: with a 4-byte AS number the number must be 0..65535"))?;
        Ok(RouteTargetOrDistinguisher::As4(asn, n))
    }
}

/// Parses a list of route targets or distinguishers, reporting each bad entry and a list that is
/// too long; returns the good ones, in order.
pub(crate) fn parse_rt_list(
    errors: &mut ValidationErrors,
    field: &str,
    list: &[String],
    max: u32,
) -> Vec<RtRd> {
    if list.len() > max as usize {
        errors.push(field, format!("at most {max} entries, got {}", list.len()));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, rt) in list.iter().enumerate() {
        match RtRd::parse(rt) {
            Ok(rt) => out.push(rt),
            Err(e) => errors.push(format!("{field}[{i}]"), e),
        }
    }
    out
}

/// What [`validate_bgpvpn`] parsed, for the build to use without parsing again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidBgpvpn {
    /// `spec.vni`.
    pub vni: u32,
    /// `routeTargets` then `importTargets`, in order, without repeats.
    pub import_targets: Vec<RtRd>,
    /// `routeTargets` then `exportTargets`, in order, without repeats.
    pub export_targets: Vec<RtRd>,
    /// The first of `routeDistinguishers` (the one a VRF uses), if any.
    pub rd: Option<RtRd>,
    pub local_pref: Option<u32>,
    /// `spec.allowedPrefixes`, in order, without repeats.
    pub allowed_prefixes: Vec<Cidr>,
}

/// Checks a BGPVPN spec on its own.
pub fn validate_bgpvpn(spec: &BgpvpnSpec) -> Result<ValidBgpvpn, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if !(VNI_MIN..=VNI_MAX).contains(&spec.vni) {
        errors.push(
            "spec.vni",
            format!("{} is outside {VNI_MIN}..{VNI_MAX}", spec.vni),
        );
    }
    let route_targets = parse_rt_list(
        &mut errors,
        "spec.routeTargets",
        &spec.route_targets,
        MAX_ROUTE_TARGETS,
    );
    let import_targets = parse_rt_list(
        &mut errors,
        "spec.importTargets",
        &spec.import_targets,
        MAX_ROUTE_TARGETS,
    );
    let export_targets = parse_rt_list(
        &mut errors,
        "spec.exportTargets",
        &spec.export_targets,
        MAX_ROUTE_TARGETS,
    );
    let rds = parse_rt_list(
        &mut errors,
        "spec.routeDistinguishers",
        &spec.route_distinguishers,
        MAX_ROUTE_DISTINGUISHERS,
    );
    let names = &spec.allowed_namespaces.names;
    if names.len() > MAX_NAMESPACE_NAMES as usize {
        errors.push(
            "spec.allowedNamespaces.names",
            format!("at most {MAX_NAMESPACE_NAMES} entries, got {}", names.len()),
        );
    }
    for (i, name) in names.iter().enumerate() {
        if !is_dns_label(name) {
            errors.push(
                format!("spec.allowedNamespaces.names[{i}]"),
                format!("{name:?} is not a namespace name (RFC 1123 label)"),
            );
        }
    }
    // FRR's automatic RT is <own AS>:<VNI>, which differs between eBGP peers, so an implicit RT
    // would silently import nothing.
    if spec.effective_import_targets().is_empty() || spec.effective_export_targets().is_empty() {
        errors.push(
            "spec.routeTargets",
            "at least one import and one export route target is needed (routeTargets, or importTargets and exportTargets): \
             FRR's automatic <own AS>:<VNI> differs between ASes",
        );
    }
    let allowed_prefixes = parse_prefix_list(
        &mut errors,
        "spec.allowedPrefixes",
        &spec.allowed_prefixes,
        MAX_ALLOWED_PREFIXES,
    );
    errors.into_result(ValidBgpvpn {
        vni: spec.vni,
        import_targets: merge_unique(&route_targets, &import_targets),
        export_targets: merge_unique(&route_targets, &export_targets),
        rd: rds.first().copied(),
        local_pref: spec.local_pref,
        allowed_prefixes,
    })
}

/// `first` then `second`, without repeats (as [`BgpvpnSpec::effective_import_targets`]).
fn merge_unique(first: &[RtRd], second: &[RtRd]) -> Vec<RtRd> {
    let mut out: Vec<RtRd> = Vec::with_capacity(first.len() + second.len());
    for rt in first.iter().chain(second) {
        if !out.contains(rt) {
            out.push(*rt);
        }
    }
    out
}

/// Parses a list of CIDRs, reporting each bad entry and a list that is too long.
fn parse_prefix_list(errors: &mut ValidationErrors, field: &str, list: &[String], max: u32) -> Vec<Cidr> {
    if list.len() > max as usize {
        errors.push(field, format!("at most {max} entries, got {}", list.len()));
    }
    let mut out: Vec<Cidr> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        match Cidr::parse(p) {
            Ok(c) if !out.contains(&c) => out.push(c),
            Ok(_) => {}
            Err(e) => errors.push(format!("{field}[{i}]"), e),
        }
    }
    out
}

/// Types the dataplane can program. Kept apart from [`validate_bgpvpn`]: an `l2` BGPVPN is a
/// valid object that this version does not program, and says so.
pub fn check_supported(spec: &BgpvpnSpec) -> Result<(), String> {
    match spec.vpn_type {
        VpnType::L3 => Ok(()),
        VpnType::L2 => {
            Err("type l2 (EVPN type-2 / L2VNI) is not programmed by this version; only l3".to_string())
        }
    }
}

/// `spec.vni` may not change once programmed: every node's VRF, RD and routes hang off it.
pub fn validate_vni_unchanged(programmed: Option<u32>, spec_vni: u32) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if let Some(old) = programmed.filter(|old| *old != spec_vni) {
        errors.push("spec.vni", format!("is immutable: programmed as {old}, now {spec_vni}; delete and re-create the BGPVPN to change it"));
    }
    errors.into_result(())
}

/// What [`validate_binding`] parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidBinding<'a> {
    /// The one target.
    pub target: BindingTarget<'a>,
    /// `advertisePrefixes`, in order, without repeats.
    pub advertise_prefixes: Vec<Cidr>,
}

/// Checks a VNIBinding spec and returns its one target and its prefixes.
pub fn validate_binding<'a>(spec: &'a VniBindingSpec) -> Result<ValidBinding<'a>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    check_dns_subdomain(&mut errors, "spec.bgpvpn", &spec.bgpvpn);
    let mut targets = Vec::new();
    if let Some(sel) = &spec.pod_selector {
        targets.push(BindingTarget::Pods(sel));
    }
    type NeutronId<'a> = (&'static str, Option<&'a str>, fn(&'a str) -> BindingTarget<'a>);
    let neutron_ids: [NeutronId<'a>; 3] = [
        (
            "spec.networkId",
            spec.network_id.as_deref(),
            BindingTarget::Network,
        ),
        ("spec.routerId", spec.router_id.as_deref(), BindingTarget::Router),
        ("spec.portId", spec.port_id.as_deref(), BindingTarget::Port),
    ];
    for (field, value, make) in neutron_ids {
        if let Some(id) = value {
            if is_uuid(id) {
                targets.push(make(id));
            } else {
                errors.push(field, format!("{id:?} is not a Neutron id (UUID)"));
            }
        }
    }
    let set = [
        spec.pod_selector.is_some(),
        spec.network_id.is_some(),
        spec.router_id.is_some(),
        spec.port_id.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        0 => errors.push(
            "spec",
            "exactly one of podSelector, networkId, routerId, portId is required; none is set",
        ),
        1 => {}
        n => errors.push(
            "spec",
            format!("exactly one of podSelector, networkId, routerId, portId is allowed; {n} are set"),
        ),
    }
    let advertise_prefixes = parse_prefix_list(
        &mut errors,
        "spec.advertisePrefixes",
        &spec.advertise_prefixes,
        MAX_ADVERTISED_PREFIXES,
    );
    match targets.pop() {
        Some(target) if errors.0.is_empty() => Ok(ValidBinding {
            target,
            advertise_prefixes,
        }),
        _ => Err(errors),
    }
}

/// Parses `addr/len`, refusing host bits (a typo that would route or advertise the wrong prefix).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not in CIDR notation (addr/len)"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("{s:?}: prefix length must be 0..{max}"))?;
    let host_bits_set = match ip {
        IpAddr::V4(v4) => len < 32 && u32::from(v4) & (u32::MAX >> len) != 0,
        IpAddr::V6(v6) => len < 128 && u128::from(v6) & (u128::MAX >> len) != 0,
    };
    if host_bits_set {
        return Err(format!("{s:?} has host bits set"));
    }
    Ok((ip, len))
}

/// A prefix: address and length, without host bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

/// Ranges no binding ever advertises, whatever the BGPVPN allows: a prefix overlapping one of
/// them would draw (or leak) traffic that is never a tenant's.
const RESERVED_RANGES: [(&str, &str); 9] = [
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

impl Cidr {
    /// Parses `addr/len` (see [`parse_cidr`]).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        parse_cidr(s).map(|(addr, len)| Cidr { addr, len })
    }

    /// The host prefix of one address (`/32`, `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        if self.len > other.len {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                self.len == 0 || (u32::from(a) ^ u32::from(b)) >> (32 - u32::from(self.len)) == 0
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                self.len == 0 || (u128::from(a) ^ u128::from(b)) >> (128 - u32::from(self.len)) == 0
            }
            _ => false,
        }
    }

    /// Whether the two share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Why this prefix is never advertised, if it is one of those: a default route, or a
    /// prefix overlapping an unspecified, loopback, link-local, multicast or broadcast range.
    pub fn never_advertised(&self) -> Option<String> {
        if self.len == 0 {
            return Some("a default route".to_string());
        }
        RESERVED_RANGES.iter().find_map(|(range, what)| {
            let range = Cidr::parse(range).ok()?;
            self.overlaps(&range)
                .then(|| format!("overlaps the {what} range {range}"))
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A Neutron id.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// An RFC 1123 label (a namespace name).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX_LEN as usize
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_dns_subdomain(errors: &mut ValidationErrors, field: &str, name: &str) {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > DNS_SUBDOMAIN_MAX_LEN as usize || !name.split('.').all(label_ok) {
        errors.push(
            field,
            format!("{name:?} is not a valid object name (RFC 1123 subdomain)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpn(vni: u32, rts: &[&str]) -> BgpvpnSpec {
        BgpvpnSpec {
            vpn_type: VpnType::L3,
            vni,
            route_targets: rts.iter().map(|s| s.to_string()).collect(),
            import_targets: vec![],
            export_targets: vec![],
            route_distinguishers: vec![],
            local_pref: None,
            allowed_namespaces: Default::default(),
            allowed_prefixes: vec![],
        }
    }

    #[test]
    fn rt_rd_forms() {
        use RouteTargetOrDistinguisher::*;
        assert_eq!(parse_rt_rd("65000:1001"), Ok(As2(65000, 1001)));
        assert_eq!(parse_rt_rd("65000:4294967295"), Ok(As2(65000, u32::MAX)));
        assert_eq!(
            parse_rt_rd("192.0.2.1:7"),
            Ok(Ipv4("192.0.2.1".parse().unwrap(), 7))
        );
        assert_eq!(parse_rt_rd("4200000000:65535"), Ok(As4(4_200_000_000, 65535)));
        for bad in [
            "",
            "65000",
            ":1",
            "65000:",
            "4200000000:65536",
            "192.0.2.1:65536",
            "300.0.0.1:1",
            "4294967296:1",
            "a:1",
            "65000:1\n",
            "65000:-1",
        ] {
            assert!(parse_rt_rd(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn bgpvpn_needs_route_targets_and_valid_vni() {
        assert!(validate_bgpvpn(&vpn(1001, &["65000:1001"])).is_ok());
        let err = validate_bgpvpn(&vpn(0, &[])).unwrap_err().to_string();
        assert!(err.contains("spec.vni") && err.contains("route target"), "{err}");
        let err = validate_bgpvpn(&vpn(16_777_216, &["65000:1"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("16777216"), "{err}");
        let mut split = vpn(5, &[]);
        split.import_targets = vec!["65000:5".into()];
        assert!(validate_bgpvpn(&split).is_err(), "export missing");
        split.export_targets = vec!["65000:6".into()];
        assert!(validate_bgpvpn(&split).is_ok());
    }

    #[test]
    fn bgpvpn_parsed_once() {
        let mut v = vpn(7, &["65000:7", "65000:8"]);
        v.import_targets = vec!["65000:8".into(), "192.0.2.1:9".into()];
        v.route_distinguishers = vec!["65000:70".into(), "65000:71".into()];
        v.local_pref = Some(300);
        let valid = validate_bgpvpn(&v).unwrap();
        let strings = |l: &[RtRd]| l.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(strings(&valid.import_targets), v.effective_import_targets());
        assert_eq!(strings(&valid.export_targets), v.effective_export_targets());
        assert_eq!(valid.rd.map(|r| r.to_string()).as_deref(), Some("65000:70"));
        assert_eq!((valid.vni, valid.local_pref), (7, Some(300)));
    }

    #[test]
    fn allowed_namespace_names_are_namespace_names() {
        let mut v = vpn(7, &["65000:7"]);
        v.allowed_namespaces.names = vec!["team-a".into(), "b2".into()];
        assert!(validate_bgpvpn(&v).is_ok());
        v.allowed_namespaces.names = vec!["Team_A".into(), "-x".into(), "a".repeat(64)];
        let err = validate_bgpvpn(&v).unwrap_err().to_string();
        assert!(
            err.contains("names[0]") && err.contains("names[1]") && err.contains("names[2]"),
            "{err}"
        );
    }

    #[test]
    fn vni_is_immutable_once_programmed() {
        assert!(validate_vni_unchanged(None, 5).is_ok());
        assert!(validate_vni_unchanged(Some(5), 5).is_ok());
        assert!(
            validate_vni_unchanged(Some(5), 6)
                .unwrap_err()
                .to_string()
                .contains("immutable")
        );
    }

    fn binding() -> VniBindingSpec {
        VniBindingSpec {
            bgpvpn: "vpn-a".into(),
            pod_selector: None,
            network_id: None,
            router_id: None,
            port_id: None,
            advertise_prefixes: vec![],
        }
    }

    #[test]
    fn binding_needs_exactly_one_target() {
        let none = binding();
        assert!(
            validate_binding(&none)
                .unwrap_err()
                .to_string()
                .contains("none is set")
        );
        let mut two = binding();
        two.pod_selector = Some(Default::default());
        two.router_id = Some("2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11".into());
        assert!(
            validate_binding(&two)
                .unwrap_err()
                .to_string()
                .contains("2 are set")
        );
        let mut one = binding();
        one.port_id = Some("2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11".into());
        assert_eq!(
            validate_binding(&one).unwrap().target,
            BindingTarget::Port("2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11")
        );
        one.port_id = Some("not-a-uuid".into());
        assert!(
            validate_binding(&one)
                .unwrap_err()
                .to_string()
                .contains("spec.portId")
        );
        let mut bad_name = binding();
        bad_name.bgpvpn = "Bad Name".into();
        bad_name.pod_selector = Some(Default::default());
        assert!(
            validate_binding(&bad_name)
                .unwrap_err()
                .to_string()
                .contains("spec.bgpvpn")
        );
    }

    #[test]
    fn allowed_prefixes_are_prefixes() {
        let mut v = vpn(7, &["65000:7"]);
        v.allowed_prefixes = vec![
            "192.0.2.0/24".into(),
            "2001:db8::/32".into(),
            "192.0.2.0/24".into(),
        ];
        let valid = validate_bgpvpn(&v).unwrap();
        assert_eq!(
            valid
                .allowed_prefixes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            ["192.0.2.0/24", "2001:db8::/32"]
        );
        v.allowed_prefixes = vec!["192.0.2.1/24".into(), "nope".into()];
        let err = validate_bgpvpn(&v).unwrap_err().to_string();
        assert!(
            err.contains("allowedPrefixes[0]") && err.contains("allowedPrefixes[1]"),
            "{err}"
        );
    }

    #[test]
    fn prefix_containment_and_the_never_advertised() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        assert!(c("10.0.0.0/8").contains(&c("10.1.2.0/24")));
        assert!(c("10.0.0.0/8").contains(&c("10.0.0.0/8")));
        assert!(!c("10.1.2.0/24").contains(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/8").contains(&c("11.0.0.0/24")));
        assert!(c("0.0.0.0/0").contains(&c("203.0.113.9/32")));
        assert!(!c("0.0.0.0/0").contains(&c("2001:db8::/32")), "no family crosses");
        assert!(c("2001:db8::/32").contains(&c("2001:db8:1::/48")));
        assert!(!c("2001:db8::/32").contains(&c("2001:db9::/48")));
        for never in [
            "0.0.0.0/0",
            "::/0",
            "0.0.0.0/32",
            "0.0.0.0/1",
            "127.0.0.1/32",
            "169.254.0.0/16",
            "169.254.7.0/24",
            "169.0.0.0/8",
            "224.0.0.0/4",
            "239.1.1.1/32",
            "::/128",
            "::1/128",
            "fe80::/64",
            "ff02::1/128",
        ] {
            assert!(c(never).never_advertised().is_some(), "{never} must be refused");
        }
        for fine in [
            "10.96.0.0/12",
            "192.0.2.0/24",
            "203.0.113.9/32",
            "2001:db8::/32",
            "fd00::/8",
            "128.0.0.0/3",
        ] {
            assert_eq!(c(fine).never_advertised(), None, "{fine}");
        }
        assert_eq!(Cidr::host("10.1.2.3".parse().unwrap()).to_string(), "10.1.2.3/32");
    }

    #[test]
    fn cidr_parsing() {
        assert!(parse_cidr("10.0.0.0/24").is_ok());
        assert!(parse_cidr("2001:db8::/32").is_ok());
        assert!(parse_cidr("10.0.0.1/24").unwrap_err().contains("host bits"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0.0").is_err());
    }
}
