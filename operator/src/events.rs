//! Events (events.k8s.io/v1), through kube-runtime's [`Recorder`]. Events about cluster-scoped
//! objects (BGPVPN, Node) are in namespace `default`, where `kubectl describe` finds them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Records events for the operator.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Records `event` about the object `regarding` (kube-runtime's [`Recorder`]: repeats become
    /// one event series; events about cluster-scoped objects go to `default`); failures are
    /// logged, never fatal.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        if let Err(e) = self.recorder.publish(event, regarding).await {
            tracing::warn!(kind = ?regarding.kind, name = ?regarding.name, reason = %event.reason, error = %e, "cannot record event");
        }
    }
}
