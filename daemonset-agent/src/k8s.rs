//! Kubernetes wiring: watch this node's own `EVPNNodeState` (by name, with a field selector) and
//! write its status with server-side apply. When the API server is unreachable the watch only
//! retries (with backoff): the dataplane keeps the last desired state and repairs continue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bgpvpn_crds::{EvpnNodeState, EvpnNodeStateSpec, EvpnNodeStateStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use tokio::sync::mpsc;

use crate::agent::{SourceEvent, StatusWriter};
use crate::model::NodeModel;

/// Field manager of the agent's status writes.
pub const FIELD_MANAGER: &str = "bgpvpn-agent";

/// Desired states from the node's own object. Repeated events with the same spec and
/// generation (e.g. caused by the agent's own status writes) are not passed on.
pub fn kube_source(client: Client, node: String) -> mpsc::Receiver<SourceEvent> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let api: Api<EvpnNodeState> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
        let mut last: Option<(EvpnNodeStateSpec, Option<i64>)> = None;
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => o,
                Ok(Event::Delete(_)) => {
                    last = None;
                    if tx.send(SourceEvent::Gone).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Event::Init) | Ok(Event::InitDone) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, node, "watching the EVPNNodeState failed; keeping the dataplane as it is");
                    continue;
                }
            };
            let key = (obj.spec.clone(), obj.metadata.generation);
            if last.as_ref() == Some(&key) {
                continue;
            }
            last = Some(key);
            let ev = SourceEvent::Desired(NodeModel::try_from(&obj).map_err(|e| e.to_string()));
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Writes the status subresource by server-side apply (field manager [`FIELD_MANAGER`]).
pub fn kube_status_writer(client: Client, node: String) -> StatusWriter {
    let api: Api<EvpnNodeState> = Api::all(client);
    Box::new(move |st: EvpnNodeStateStatus| {
        let (api, node) = (api.clone(), node.clone());
        Box::pin(async move {
            let patch = serde_json::json!({
                "apiVersion": EvpnNodeState::api_version(&()),
                "kind": EvpnNodeState::kind(&()),
                "status": st,
            });
            match api
                .patch_status(
                    &node,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, node, "writing the EVPNNodeState status failed; retrying after the next pass");
                    false
                }
            }
        })
    })
}

/// The agent's own DaemonSet, watched to tell an uninstall (`helm uninstall` deletes it) from a
/// restart, a rollout or a drain. Only a delete event, a deletion timestamp, or the object gone
/// after it was seen counts: an unreachable API server or a missing permission never reads as
/// an uninstall. One object, in the agent's own namespace.
pub struct OwnDaemonSet {
    gone: tokio::sync::watch::Receiver<bool>,
    seen: Arc<AtomicBool>,
    api: Api<DaemonSet>,
    name: String,
}

/// How long a shutdown waits for the API server (or the watch) to say the DaemonSet is gone.
const SHUTDOWN_LOOKUP: Duration = Duration::from_secs(5);

/// What the watch's events say about one object's deletion.
#[derive(Default)]
struct DeletionTracker {
    /// The object was there once (its absence then means it was deleted).
    seen: bool,
    /// The current (re)list holds the object.
    listed: bool,
}

impl DeletionTracker {
    fn deleted_by(&mut self, ev: &Event<DaemonSet>) -> bool {
        match ev {
            Event::Apply(ds) | Event::InitApply(ds) => {
                self.seen = true;
                self.listed = true;
                ds.metadata.deletion_timestamp.is_some()
            }
            Event::Delete(_) => true,
            Event::Init => {
                self.listed = false;
                false
            }
            // a relist without an object seen before: deleted while the watch was down
            Event::InitDone => self.seen && !self.listed,
        }
    }
}

impl OwnDaemonSet {
    pub fn watch(client: Client, namespace: String, name: String) -> Self {
        let api: Api<DaemonSet> = Api::namespaced(client, &namespace);
        let (gone_tx, gone) = tokio::sync::watch::channel(false);
        let seen = Arc::new(AtomicBool::new(false));
        let own = OwnDaemonSet {
            gone,
            seen: seen.clone(),
            api: api.clone(),
            name: name.clone(),
        };
        tokio::spawn(async move {
            let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
            let mut tracker = DeletionTracker::default();
            while let Some(ev) = stream.next().await {
                let deleted = match ev {
                    Ok(ev) => tracker.deleted_by(&ev),
                    Err(e) => {
                        tracing::debug!(error = %e, "watching the agent's DaemonSet failed");
                        continue;
                    }
                };
                seen.store(tracker.seen, Ordering::SeqCst);
                if deleted && !gone_tx.send_replace(true) {
                    tracing::info!(%namespace, %name, "the agent's DaemonSet is deleted: the node is cleaned up at shutdown");
                }
            }
        });
        own
    }

    /// Whether the DaemonSet is deleted, asked at shutdown: the watch's word, else the API
    /// server's answer now, since the pod's deletion can reach the agent before the watch
    /// event. When the API cannot answer (the uninstall may have removed the agent's RBAC
    /// already) the open watch still may: it gets until the same deadline.
    pub async fn deleted(&self) -> bool {
        if *self.gone.borrow() {
            return true;
        }
        let lookup = async {
            match self.api.get_opt(&self.name).await {
                Ok(Some(ds)) => Some(ds.metadata.deletion_timestamp.is_some()),
                Ok(None) => Some(self.seen.load(Ordering::SeqCst)),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the agent's DaemonSet at shutdown failed");
                    None
                }
            }
        };
        let mut gone = self.gone.clone();
        let answer = async {
            match lookup.await {
                Some(deleted) => deleted,
                None => gone.wait_for(|g| *g).await.is_ok(),
            }
        };
        match tokio::time::timeout(SHUTDOWN_LOOKUP, answer).await {
            Ok(deleted) => deleted || *self.gone.borrow(),
            Err(_) => {
                tracing::warn!("the agent's DaemonSet: no answer at shutdown; taken as not deleted");
                *self.gone.borrow()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn ds(deleting: bool) -> DaemonSet {
        let mut ds = DaemonSet::default();
        ds.metadata.name = Some("agent".into());
        if deleting {
            ds.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        ds
    }

    fn run(events: Vec<Event<DaemonSet>>) -> Vec<bool> {
        let mut t = DeletionTracker::default();
        events.iter().map(|e| t.deleted_by(e)).collect()
    }

    #[test]
    fn an_object_never_seen_is_not_taken_as_deleted() {
        // a wrong --own-daemonset name must not clean the node up on every restart
        assert_eq!(run(vec![Event::Init, Event::InitDone]), [false, false]);
    }

    #[test]
    fn a_relist_without_the_object_seen_before_is_a_deletion() {
        let seen = vec![Event::Init, Event::InitApply(ds(false)), Event::InitDone];
        let relist = [seen, vec![Event::Init, Event::InitDone]].concat();
        assert_eq!(run(relist), [false, false, false, false, true]);
    }

    #[test]
    fn a_delete_event_or_a_deletion_timestamp_is_a_deletion() {
        let ev = vec![
            Event::Apply(ds(false)),
            Event::Apply(ds(true)),
            Event::Delete(ds(true)),
        ];
        assert_eq!(run(ev), [false, true, true]);
    }
}
