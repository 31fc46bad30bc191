//! Typed, tolerant views of the two Kuryr-kubernetes CRDs the operator reads (group
//! `openstack.org`, version `v1`, namespaced). They are written by Kuryr, not by us, and may be
//! partially filled while Kuryr works on them, or malformed: every part that can be missing is
//! optional, and every part that can be wrong is a [`Lenient`], so one bad object never breaks
//! the watch of all the others. Problems are reported where they matter (the status of a binding
//! that resolves through the object) and counted in a metric.
//!
//! * `KuryrNetwork` (one per namespace): `spec {nsName, projectId, nsLabels}`,
//!   `status {netId, subnetId, subnetCIDR, routerId, populated, nsLabels}`.
//! * `KuryrPort` (one per pod, named after it): `spec {podUid, podNodeName, podStatic}`,
//!   `status.vifs`: a map ifname -> `{default, vif}` where `vif` is an os-vif object:
//!   `{id (Neutron port id), address (MAC), network: {id, subnets: [{cidr, ips: [{address}]}]},
//!   vif_name, active}`. Kuryr stores it as an oslo versioned-object primitive
//!   (`{"versioned_object.data": {...}}`, lists as `{"objects": [...]}`); both that and the plain
//!   shape are accepted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// API group of the Kuryr CRDs.
pub const GROUP: &str = "openstack.org";
/// The served version the operator reads.
pub const VERSION: &str = "v1";

/// A part of a foreign object that was absent, well-formed, or malformed (with the reason).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Lenient<T> {
    #[default]
    Absent,
    Ok(T),
    Malformed(String),
}

impl<T> Lenient<T> {
    /// The value when it is present and well-formed.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Lenient::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// Why it could not be read, if it was malformed.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Lenient::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Anything that is JSON at all is accepted here, as text (scanned, not parsed: any
        // depth); the typed parse happens afterwards, on its own, so a part nested too deep is
        // a malformed part and not an unreadable object.
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(Lenient::from_json(raw.get()))
    }
}

impl<T: DeserializeOwned> Lenient<T> {
    fn from_json(text: &str) -> Self {
        if text.trim() == "null" {
            return Lenient::Absent;
        }
        match serde_json::from_str(text) {
            Ok(v) => Lenient::Ok(v),
            Err(e) => Lenient::Malformed(e.to_string()),
        }
    }
}

macro_rules! kuryr_resource {
    ($ty:ident, $kind:literal, $plural:literal) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// Kuryr's per-namespace network: the Neutron network, subnet and router of a namespace.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct KuryrNetwork {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Lenient<KuryrNetworkSpec>,
    #[serde(default)]
    pub status: Lenient<KuryrNetworkStatus>,
}
kuryr_resource!(KuryrNetwork, "KuryrNetwork", "kuryrnetworks");

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KuryrNetworkSpec {
    #[serde(default)]
    pub ns_name: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KuryrNetworkStatus {
    #[serde(default)]
    pub net_id: Option<String>,
    #[serde(default)]
    pub subnet_id: Option<String>,
    #[serde(default, rename = "subnetCIDR")]
    pub subnet_cidr: Option<String>,
    #[serde(default)]
    pub router_id: Option<String>,
    #[serde(default)]
    pub populated: Option<bool>,
}

/// Kuryr's per-pod port object, named after the pod.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct KuryrPort {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Lenient<KuryrPortSpec>,
    #[serde(default)]
    pub status: Lenient<KuryrPortStatus>,
}
kuryr_resource!(KuryrPort, "KuryrPort", "kuryrports");

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KuryrPortSpec {
    #[serde(default)]
    pub pod_uid: Option<String>,
    #[serde(default)]
    pub pod_node_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct KuryrPortStatus {
    /// ifname -> vif; each entry on its own, so one bad vif does not hide the others.
    #[serde(default)]
    pub vifs: BTreeMap<String, Lenient<VifEntry>>,
}

/// One interface of a pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VifEntry {
    /// The pod's default interface (the one in the namespace's network).
    pub default: bool,
    pub vif: Vif,
}

impl<'de> Deserialize<'de> for VifEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            default: bool,
            vif: Vif,
        }
        let raw: Raw = serde_json::from_value(unwrap_versioned_objects(Value::deserialize(d)?))
            .map_err(serde::de::Error::custom)?;
        Ok(VifEntry {
            default: raw.default,
            vif: raw.vif,
        })
    }
}

/// The os-vif object of an interface, in its plain shape.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Vif {
    /// The Neutron port id.
    pub id: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub network: Option<VifNetwork>,
    /// The host-side interface.
    #[serde(default)]
    pub vif_name: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct VifNetwork {
    /// The Neutron network id.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub subnets: Vec<VifSubnet>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct VifSubnet {
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub ips: Vec<VifIp>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct VifIp {
    pub address: String,
}

impl Vif {
    /// The addresses of the vif; those that do not parse are returned apart.
    pub fn ips(&self) -> (Vec<IpAddr>, Vec<String>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for ip in self.network.iter().flat_map(|n| &n.subnets).flat_map(|s| &s.ips) {
            match ip.address.parse::<IpAddr>() {
                Ok(a) => good.push(a),
                Err(_) => bad.push(ip.address.clone()),
            }
        }
        (good, bad)
    }

    /// The Neutron network of the vif, when Kuryr recorded it.
    pub fn network_id(&self) -> Option<&str> {
        self.network.as_ref().and_then(|n| n.id.as_deref())
    }
}

/// Turns an oslo versioned-object primitive into the plain shape: every
/// `{"versioned_object.data": X, ...}` becomes `X`, and a list object's `{"objects": [...]}`
/// becomes the list. Plain JSON passes through unchanged.
pub fn unwrap_versioned_objects(value: Value) -> Value {
    match value {
        Value::Object(mut map) => {
            if let Some(data) = map.remove("versioned_object.data") {
                let data = unwrap_versioned_objects(data);
                return match data {
                    Value::Object(mut inner)
                        if inner.len() == 1 && inner.get("objects").is_some_and(Value::is_array) =>
                    {
                        inner.remove("objects").expect("checked above")
                    }
                    other => other,
                };
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, unwrap_versioned_objects(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(unwrap_versioned_objects).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_and_versioned_vifs_read_the_same() {
        let plain = json!({"metadata": {"name": "web", "namespace": "demo"},
            "spec": {"podUid": "u1", "podNodeName": "n1"},
            "status": {"vifs": {"eth0": {"default": true, "vif": {
                "id": "2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11", "address": "fa:16:3e:00:00:01", "vif_name": "tap2a9d2ad8-5d", "active": true,
                "network": {"id": "78f13a6a-586e-43f8-be56-70c5c04239a5", "subnets": [{"cidr": "10.0.0.0/24", "ips": [{"address": "10.0.0.84"}]}]}}}}}});
        let versioned = json!({"metadata": {"name": "web", "namespace": "demo"},
            "spec": {"podUid": "u1", "podNodeName": "n1"},
            "status": {"vifs": {"eth0": {"default": true, "vif": {
                "versioned_object.name": "VIFOpenVSwitch", "versioned_object.namespace": "os_vif", "versioned_object.version": "1.0",
                "versioned_object.data": {"id": "2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11", "address": "fa:16:3e:00:00:01", "vif_name": "tap2a9d2ad8-5d", "active": true,
                    "network": {"versioned_object.name": "Network", "versioned_object.data": {"id": "78f13a6a-586e-43f8-be56-70c5c04239a5",
                        "subnets": {"versioned_object.name": "SubnetList", "versioned_object.data": {"objects": [
                            {"versioned_object.name": "Subnet", "versioned_object.data": {"cidr": "10.0.0.0/24",
                                "ips": {"versioned_object.name": "FixedIPList", "versioned_object.data": {"objects": [
                                    {"versioned_object.name": "FixedIP", "versioned_object.data": {"address": "10.0.0.84"}}]}}}}]}}}}}}}}}});
        let a: KuryrPort = serde_json::from_value(plain).unwrap();
        let b: KuryrPort = serde_json::from_value(versioned).unwrap();
        assert_eq!(a, b);
        let vif = &a.status.ok().unwrap().vifs["eth0"].ok().unwrap().vif;
        assert_eq!(vif.ips().0, vec!["10.0.0.84".parse::<IpAddr>().unwrap()]);
        assert_eq!(vif.network_id(), Some("78f13a6a-586e-43f8-be56-70c5c04239a5"));
    }

    #[test]
    fn malformed_parts_are_kept_apart() {
        let obj = json!({"metadata": {"name": "p"}, "spec": "nonsense",
            "status": {"vifs": {"eth0": {"vif": {"address": "no id"}}, "eth1": {"vif": {"id": "x"}}}}});
        let kp: KuryrPort = serde_json::from_value(obj).unwrap();
        assert!(kp.spec.problem().is_some());
        let vifs = &kp.status.ok().unwrap().vifs;
        assert!(vifs["eth0"].problem().unwrap().contains("id"));
        assert_eq!(vifs["eth1"].ok().unwrap().vif.id, "x");
        let whole: KuryrPort =
            serde_json::from_value(json!({"metadata": {"name": "q"}, "status": {"vifs": "not a map"}}))
                .unwrap();
        assert!(whole.status.problem().is_some());
        let empty: KuryrNetwork = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        assert_eq!(empty.status, Lenient::Absent);
    }
}
