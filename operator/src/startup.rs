//! Startup checks: the project's CRDs must be served (else a clear message and a non-zero exit);
//! the Kuryr CRDs are optional.

use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use kube::Client;
use kube::api::ListParams;
use kube::core::Request;
use serde::de::IgnoredAny;

use crate::kuryr::{KuryrNetwork, KuryrPort};

/// Whether the API server serves kind `K` (by a one-item list whose answer is not parsed: no
/// CRD read access needed, and no object, however malformed or deep, can make it fail).
pub async fn served<K>(client: &Client) -> Result<bool, kube::Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    let request = Request::new(K::url_path(&(), None))
        .list(&ListParams::default().limit(1))
        .map_err(kube::Error::BuildRequest)?;
    match client.request::<IgnoredAny>(request).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

fn crd_name<K: kube::Resource<DynamicType = ()>>() -> String {
    format!("{}.{}", K::plural(&()), K::group(&()))
}

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "the CRD(s) {0} are not installed (or not served) on this API server: install them first, e.g. `kubectl apply -f crds/`"
    )]
    MissingCrds(String),
    #[error("cannot check the CRDs: {0}")]
    Api(#[from] kube::Error),
}

/// Fails unless BGPVPN, VNIBinding and EVPNNodeState are served.
pub async fn check_crds(client: &Client) -> Result<(), StartupError> {
    let mut missing = Vec::new();
    if !served::<Bgpvpn>(client).await? {
        missing.push(crd_name::<Bgpvpn>());
    }
    if !served::<VniBinding>(client).await? {
        missing.push(crd_name::<VniBinding>());
    }
    if !served::<EvpnNodeState>(client).await? {
        missing.push(crd_name::<EvpnNodeState>());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StartupError::MissingCrds(missing.join(", ")))
    }
}

/// `Ok(None)` when both Kuryr CRDs are served, else which ones are missing.
pub async fn kuryr_missing(client: &Client) -> Result<Option<String>, kube::Error> {
    let mut missing = Vec::new();
    if !served::<KuryrNetwork>(client).await? {
        missing.push(crd_name::<KuryrNetwork>());
    }
    if !served::<KuryrPort>(client).await? {
        missing.push(crd_name::<KuryrPort>());
    }
    Ok(if missing.is_empty() {
        None
    } else {
        Some(missing.join(", "))
    })
}
