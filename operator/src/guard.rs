//! Objects that may not decode: one object the operator's types cannot read must never make the
//! list or the watch of its whole kind fail.
//!
//! kube-rs decodes a list (`ObjectList<K>`) and each watch event (`WatchEvent<K>`) with one
//! `serde_json` call: an item that does not decode fails the whole list (the reflector then
//! never fills its store and retries forever), and a watch event that does not decode is
//! dropped, so the store keeps an old version of the object, or never learns of it. Objects the
//! API server accepts that our types do not are easy to come by: a field nested deeper than the
//! 128 levels serde_json reads (under `x-kubernetes-preserve-unknown-fields`), a number beyond
//! the range of its type stored under an older CRD without the `maximum`, a foreign CRD that
//! changed its shape.
//!
//! [`Guarded<K>`] is watched (and listed) instead of `K`. Its `Deserialize` never fails on JSON:
//! it takes the object's text as it is (`RawValue`: scanned, not parsed, at any depth) and
//! decodes `K` from it with a parser of its own, so the depth counts from the object and not
//! from the list around it. An object that still does not decode is kept as [`Unreadable`]:
//! the few metadata fields that name it, and the error. An object that does not decode is tried
//! once more without `metadata.managedFields`: nothing in the operator reads them, and they are
//! as deep as the object.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An object of kind `K` as the API server sent it: readable, or not.
#[derive(Clone, Debug)]
pub struct Guarded<K> {
    inner: Result<Arc<K>, Arc<Unreadable>>,
}

/// What is known of an object that could not be read: its name, and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unreadable {
    /// `name`, `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
    /// `deletionTimestamp` and `labels`, when they can be read.
    pub metadata: ObjectMeta,
    pub error: String,
    /// `status.observedGeneration` and `status.conditions`, when they can be read: what the
    /// operator last wrote, so it writes again only what changed.
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

impl<K> Guarded<K> {
    pub fn readable(obj: K) -> Self {
        Guarded {
            inner: Ok(Arc::new(obj)),
        }
    }

    pub fn unreadable(unreadable: Unreadable) -> Self {
        Guarded {
            inner: Err(Arc::new(unreadable)),
        }
    }

    /// The object, or why it could not be read.
    pub fn get(&self) -> Result<&Arc<K>, &Unreadable> {
        self.inner.as_ref().map_err(|e| &**e)
    }

    /// The object when it could be read.
    pub fn ok(&self) -> Option<&Arc<K>> {
        self.inner.as_ref().ok()
    }

    /// The object, or why it could not be read, taken out.
    pub fn into_inner(self) -> Result<Arc<K>, Arc<Unreadable>> {
        self.inner
    }

    /// The object for changing it (never copied right after decoding: it is not shared yet).
    pub fn ok_mut(&mut self) -> Option<&mut K>
    where
        K: Clone,
    {
        self.inner.as_mut().ok().map(Arc::make_mut)
    }
}

impl<K: DeserializeOwned> Guarded<K> {
    /// Decodes one object from its JSON text; never fails.
    pub fn from_json(text: &str) -> Self {
        let error = match serde_json::from_str::<K>(text) {
            Ok(obj) => return Guarded::readable(obj),
            Err(e) => e,
        };
        // once more without the managed fields, which are as deep as the object is
        let stripped = without_managed_fields(text);
        let (text, error) = match stripped.as_deref().map(serde_json::from_str::<K>) {
            Some(Ok(obj)) => return Guarded::readable(obj),
            Some(Err(e)) => (stripped.as_deref().unwrap_or(text), e),
            None => (text, error),
        };
        let (observed_generation, conditions) = status_conditions(text);
        Guarded::unreadable(Unreadable {
            metadata: naming_metadata(text),
            error: error.to_string(),
            observed_generation,
            conditions,
        })
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // fails only on what is not JSON at all (then the whole answer is not)
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(Guarded::from_json(raw.get()))
    }
}

impl<K: kube::Resource + Clone> kube::Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match &self.inner {
            Ok(obj) => obj.meta(),
            Err(u) => &u.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.inner {
            Ok(obj) => Arc::make_mut(obj).meta_mut(),
            Err(u) => &mut Arc::make_mut(u).metadata,
        }
    }
}

/// The object's text without `metadata.managedFields`; `None` when it has none (or the text is
/// not an object).
fn without_managed_fields(text: &str) -> Option<String> {
    let mut top: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    let meta = top.get("metadata")?.get();
    // cheap test before splitting the metadata up
    if !meta.contains("\"managedFields\"") {
        return None;
    }
    let mut metadata: BTreeMap<String, &RawValue> = serde_json::from_str(meta).ok()?;
    metadata.remove("managedFields")?;
    let metadata = serde_json::value::to_raw_value(&metadata).ok()?;
    top.insert("metadata".into(), &metadata);
    serde_json::to_string(&top).ok()
}

/// The metadata that names an object, read past anything else (skipped parts are scanned, not
/// parsed, so their depth does not matter), each field on its own: one that does not read is
/// left out.
fn naming_metadata(text: &str) -> ObjectMeta {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        metadata: Option<BTreeMap<String, &'a RawValue>>,
    }
    let Ok(Top { metadata: Some(m) }) = serde_json::from_str::<Top>(text) else {
        return ObjectMeta::default();
    };
    fn field<T: DeserializeOwned>(m: &BTreeMap<String, &RawValue>, key: &str) -> Option<T> {
        serde_json::from_str(m.get(key)?.get()).ok()
    }
    ObjectMeta {
        name: field(&m, "name"),
        namespace: field(&m, "namespace"),
        uid: field(&m, "uid"),
        resource_version: field(&m, "resourceVersion"),
        generation: field(&m, "generation"),
        creation_timestamp: field::<Time>(&m, "creationTimestamp"),
        deletion_timestamp: field::<Time>(&m, "deletionTimestamp"),
        labels: field(&m, "labels"),
        ..Default::default()
    }
}

/// `status.observedGeneration` and `status.conditions`, each read on its own past anything
/// else (empty when they do not read).
fn status_conditions(text: &str) -> (Option<i64>, Vec<Condition>) {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        status: Option<BTreeMap<String, &'a RawValue>>,
    }
    let Ok(Top { status: Some(s) }) = serde_json::from_str::<Top>(text) else {
        return (None, Vec::new());
    };
    let field = |key: &str| s.get(key).map(|v| v.get());
    (
        field("observedGeneration").and_then(|v| serde_json::from_str(v).ok()),
        field("conditions")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgpvpn_crds::Bgpvpn;
    use kube::api::WatchEvent;
    use kube::core::ObjectList;
    use serde_json::{Value, json};

    use crate::kuryr::KuryrPort;

    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!("x"), |inner, _| json!({ "a": inner }))
    }

    fn vpn(name: &str, extra: Value) -> Value {
        let mut spec = json!({"vni": 7, "routeTargets": ["65000:7"]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": name, "uid": format!("u-{name}"), "generation": 3}, "spec": spec})
    }

    #[test]
    fn one_bad_item_leaves_the_list_readable() {
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "9"},
            "items": [vpn("a", json!({})), vpn("deep", json!({"extra": nested(200)})), vpn("big", json!({"localPref": 8_589_934_592u64})), vpn("b", json!({}))]});
        // the text of the list, as kube-rs decodes it; plain `Bgpvpn` fails as a whole
        let text = list.to_string();
        assert!(serde_json::from_str::<ObjectList<Bgpvpn>>(&text).is_err());
        let read: ObjectList<Guarded<Bgpvpn>> = serde_json::from_str(&text).unwrap();
        let names: Vec<(String, bool)> = read
            .items
            .iter()
            .map(|g| (kube::Resource::meta(g).name.clone().unwrap(), g.ok().is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("a".into(), true),
                ("deep".into(), true),
                ("big".into(), false),
                ("b".into(), true)
            ]
        );
        let big = read.items[2].get().unwrap_err();
        assert!(
            big.error.contains("localPref") || big.error.contains("u32"),
            "{}",
            big.error
        );
        assert_eq!(
            (big.metadata.uid.as_deref(), big.metadata.generation),
            (Some("u-big"), Some(3))
        );
    }

    #[test]
    fn watch_events_and_deep_objects() {
        // 140 levels inside the object: deeper than serde_json's 128 from where the object starts
        let port = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}}, "status": {"vifs": {"eth0": nested(140)}}});
        // the API server writes `type` first (serde reads an adjacently tagged enum's content in
        // place only after its tag)
        let line = format!(r#"{{"type":"ADDED","object":{port}}}"#);
        let WatchEvent::Added(g) = serde_json::from_str::<WatchEvent<Guarded<KuryrPort>>>(&line).unwrap()
        else {
            panic!("an ADDED event")
        };
        // the Kuryr types read each part on its own: only that part is malformed
        let p = g.ok().expect("readable: the deep part is a malformed vif");
        assert!(
            p.status.ok().unwrap().vifs["eth0"]
                .problem()
                .unwrap()
                .contains("recursion limit")
        );
        // a part too deep for the whole object to be read
        let deep = json!({"metadata": {"name": "q", "namespace": "n", "labels": {"a": "b"}, "generation": "not a number"}, "spec": nested(300)});
        let g: Guarded<Bgpvpn> = serde_json::from_str(&deep.to_string()).unwrap();
        let u = g.get().unwrap_err();
        assert_eq!(
            (u.metadata.name.as_deref(), u.metadata.namespace.as_deref()),
            (Some("q"), Some("n"))
        );
        assert_eq!(u.metadata.labels.as_ref().unwrap()["a"], "b");
    }

    #[test]
    fn an_object_with_deep_managed_fields_is_read_without_them() {
        let mut obj = vpn("m", json!({}));
        obj["metadata"]["managedFields"] =
            json!([{"manager": "x", "fieldsType": "FieldsV1", "fieldsV1": nested(200)}]);
        let g: Guarded<Bgpvpn> = serde_json::from_str(&obj.to_string()).unwrap();
        let v = g.ok().expect("readable without its managed fields");
        assert_eq!(v.metadata.managed_fields, None);
        assert_eq!(v.metadata.uid.as_deref(), Some("u-m"));
        assert_eq!(v.spec.vni, 7);
    }
}
