//! Events (events.k8s.io/v1). Namespaced objects go through kube-runtime's [`Recorder`].
//! Events about cluster-scoped objects (BGPVPN, Node) are created here instead, in
//! `kube-system`: a v1.20 API server accepts an event whose `regarding` has no namespace only
//! in `kube-system` (later versions also in `default`, where the Recorder puts them, which 1.20
//! refuses), and `regarding` must keep its empty namespace for `kubectl describe` to find it.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Namespace of events about cluster-scoped objects.
pub const CLUSTER_EVENTS_NAMESPACE: &str = "kube-system";

/// Records events for the operator.
#[derive(Clone)]
pub struct Events {
    client: Client,
    reporter: Reporter,
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Events {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    /// Records `event` about the object `regarding`; failures are logged, never fatal.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        let result = if regarding.namespace.is_some() {
            self.recorder.publish(event, regarding).await
        } else {
            self.publish_cluster_scoped(event, regarding).await
        };
        if let Err(e) = result {
            tracing::warn!(kind = ?regarding.kind, name = ?regarding.name, reason = %event.reason, error = %e, "cannot record event");
        }
    }

    async fn publish_cluster_scoped(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("bgpvpn-operator"),
            now.as_nanosecond()
        );
        let instance = self
            .reporter
            .instance
            .clone()
            .unwrap_or_else(|| self.reporter.controller.clone());
        let obj = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(CLUSTER_EVENTS_NAMESPACE.into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(instance),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), CLUSTER_EVENTS_NAMESPACE)
            .create(&PostParams::default(), &obj)
            .await
            .map(|_| ())
    }
}
