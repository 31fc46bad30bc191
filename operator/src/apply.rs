//! Writes the desired EVPNNodeStates: only those that differ from the stored object, by
//! server-side apply with the operator's field manager; and deletes those the plan retires (a
//! Node that left `nodeSelector`). The object of a deleted Node goes with it: the garbage
//! collector follows its owner reference.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgpvpn_crds::EvpnNodeState;
use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::build::{NodePlan, Plan};
use crate::metrics::Metrics;
use crate::owned::{Deleted, OwnedWriter};

/// Field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "bgpvpn-operator";
/// Label on every EVPNNodeState the operator writes; only those are ever deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "bgpvpn-operator";

/// How long a write is trusted over a store that has not shown it yet.
const STORE_LAG_GRACE: Duration = Duration::from_secs(10);
/// Writes in flight at once.
const PARALLEL_WRITES: usize = 8;

/// What was last written to a node, while the store may still show the object before it.
#[derive(Clone, Debug)]
struct Written {
    /// Shared with the plan it came from.
    desired: Arc<NodePlan>,
    /// The resourceVersion the store showed when we wrote (`None`: no object).
    over: Option<String>,
    at: Instant,
}

/// The outcome of one apply.
#[derive(Debug, Default)]
pub struct Applied {
    pub written: Vec<String>,
    pub deleted: Vec<String>,
    /// Nodes skipped because the store has not caught up with our own write yet.
    pub awaiting_store: usize,
    pub errors: Vec<String>,
}

/// What one node's object needs.
enum Need {
    UpToDate,
    Write,
    /// Our write is not in the store yet: wait rather than write it again.
    AwaitingStore,
}

/// Writes node objects; one per operator term.
pub struct NodeStateWriter {
    api: Api<EvpnNodeState>,
    writer: OwnedWriter,
    written: HashMap<String, Written>,
}

fn owner_of(obj: &EvpnNodeState) -> Option<&str> {
    obj.owner_references()
        .iter()
        .find(|o| o.kind == "Node" && o.api_version == "v1")
        .map(|o| o.uid.as_str())
}

fn up_to_date(obj: &EvpnNodeState, desired: &NodePlan) -> bool {
    obj.spec == desired.spec
        && owner_of(obj) == Some(desired.uid.as_str())
        && obj.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// The object as the operator owns it: labels, owner reference and spec; never status.
pub fn desired_object(name: &str, desired: &NodePlan) -> EvpnNodeState {
    EvpnNodeState {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.to_string(),
                uid: desired.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: desired.spec.clone(),
        status: None,
    }
}

impl NodeStateWriter {
    pub fn new(client: Client) -> Self {
        NodeStateWriter {
            api: Api::all(client.clone()),
            writer: OwnedWriter::new(client, FIELD_MANAGER),
            written: HashMap::new(),
        }
    }

    /// Whether `name` needs a write, given the stored object.
    fn need(&mut self, name: &str, desired: &NodePlan, stored: Option<&EvpnNodeState>) -> Need {
        if stored.is_some_and(|obj| up_to_date(obj, desired)) {
            self.written.remove(name);
            return Need::UpToDate;
        }
        let stored_rv = stored.and_then(|o| o.resource_version());
        match self.written.get(name) {
            // the store still shows what we wrote over: our write is on its way
            Some(w) if *w.desired == *desired && w.over == stored_rv && w.at.elapsed() < STORE_LAG_GRACE => {
                Need::AwaitingStore
            }
            _ => Need::Write,
        }
    }

    /// Makes the stored objects match `plan`.
    pub async fn apply(&mut self, plan: &Plan, stored: &[Arc<EvpnNodeState>], metrics: &Metrics) -> Applied {
        let stored: HashMap<String, &EvpnNodeState> = stored.iter().map(|o| (o.name_any(), &**o)).collect();
        let mut applied = Applied::default();
        let mut to_write = Vec::new();
        for (name, desired) in &plan.nodes {
            match self.need(name, desired, stored.get(name).copied()) {
                Need::Write => to_write.push((
                    name.clone(),
                    desired.clone(),
                    stored.get(name).and_then(|o| o.resource_version()),
                )),
                Need::UpToDate => {}
                Need::AwaitingStore => applied.awaiting_store += 1,
            }
        }
        let results: Vec<_> = stream::iter(to_write)
            .map(|(name, desired, over)| {
                let writer = self.writer.clone();
                async move {
                    let obj = desired_object(&name, &desired);
                    let res = writer.apply::<EvpnNodeState>(None, &name, &obj).await;
                    (name, desired, over, res)
                }
            })
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
        for (name, desired, over, res) in results {
            match res {
                Ok(_) => {
                    metrics.node_state_write("apply");
                    tracing::info!(node = %name, vnis = desired.spec.l3vnis.len(), "EVPNNodeState written");
                    self.written.insert(
                        name.clone(),
                        Written {
                            desired,
                            over,
                            at: Instant::now(),
                        },
                    );
                    applied.written.push(name);
                }
                Err(e) => applied.errors.push(format!("write EVPNNodeState {name}: {e}")),
            }
        }

        // what was written for a node that is no longer planned is no longer awaited
        self.written.retain(|name, _| plan.nodes.contains_key(name));
        for (name, uid) in &plan.retired_nodes {
            match self.writer.delete(&self.api, name, uid.clone()).await {
                Ok(Deleted::Deleted) => {
                    metrics.node_state_write("delete");
                    tracing::info!(node = %name, "EVPNNodeState of a node that no longer takes part in EVPN deleted");
                    applied.deleted.push(name.clone());
                }
                Ok(Deleted::AlreadyGone | Deleted::Replaced) => {}
                Err(e) => applied.errors.push(format!("delete EVPNNodeState {name}: {e}")),
            }
        }
        applied
    }
}
