//! Kubernetes wiring: watch this node's own `EVPNNodeState` (by name, with a field selector) and
//! write its status with server-side apply. When the API server is unreachable the watch only
//! retries (with backoff): the dataplane keeps the last desired state and repairs continue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether the agent's own DaemonSet has been deleted (`helm uninstall`), as its watch last said:
/// only a delete event or a deletion timestamp sets it, so an unreachable API server or a
/// missing permission never reads as an uninstall. One object, in the agent's own namespace.
pub fn watch_own_daemonset(client: Client, namespace: String, name: String) -> Arc<AtomicBool> {
    let gone = Arc::new(AtomicBool::new(false));
    let flag = gone.clone();
    tokio::spawn(async move {
        let api: Api<DaemonSet> = Api::namespaced(client, &namespace);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            let deleted = match ev {
                Ok(Event::Apply(ds)) | Ok(Event::InitApply(ds)) => ds.metadata.deletion_timestamp.is_some(),
                Ok(Event::Delete(_)) => true,
                Ok(Event::Init) | Ok(Event::InitDone) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "watching the agent's DaemonSet failed");
                    continue;
                }
            };
            if deleted && !flag.swap(true, Ordering::SeqCst) {
                tracing::info!(%namespace, %name, "the agent's DaemonSet is deleted: the node is cleaned up at shutdown");
            }
        }
    });
    gone
}
