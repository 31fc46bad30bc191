//! OpenStack sync: mirrors networking-bgpvpn BGPVPNs and their associations into the cluster.
//! Interface agreed with the controller side; filled in by the OpenStack-sync issue.

use serde::Deserialize;

/// The `openstack:` section of the operator configuration. Absent = sync off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncConfig {}

/// Runs the sync loop until `shutdown` resolves. Called only on the elected leader.
pub async fn run(_client: kube::Client, _config: SyncConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), crate::Error> {
    shutdown.await;
    Ok(())
}
