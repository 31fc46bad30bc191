//! The one writer of the objects the operator owns: the EVPNNodeStates of a pass, and the
//! BGPVPNs and VNIBindings the OpenStack sync mirrors. Every write goes out under the writer's
//! field manager; an apply is forced (the fields are ours) and its answer is not read back; a
//! create tells a name taken by someone else's object from other errors; a delete removes only
//! the object that was read (uid precondition), and one already gone or replaced is no error.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::Request;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// How a create ended.
#[derive(Debug, PartialEq)]
pub enum Created {
    /// Made, with the uid the server gave it.
    Made { uid: Option<String> },
    /// The name is taken by an object the writer does not own (its uid, if it could be read).
    NameTaken { by_uid: Option<String> },
}

/// How a delete ended.
#[derive(Debug, PartialEq)]
pub enum Deleted {
    Deleted,
    /// Nothing of that name any more.
    AlreadyGone,
    /// The name now holds another object (another uid): left to the next pass, which reads it.
    Replaced,
}

/// Writes owned objects of any kind under one field manager.
#[derive(Clone)]
pub struct OwnedWriter {
    client: Client,
    field_manager: &'static str,
}

impl OwnedWriter {
    pub fn new(client: Client, field_manager: &'static str) -> Self {
        OwnedWriter {
            client,
            field_manager,
        }
    }

    /// Server-side applies `body` (a whole `K` or the owned part of one). The object the server
    /// answers with is not parsed: for a node with a thousand VNIs that is megabytes, managed
    /// fields included, only to be dropped.
    pub async fn apply<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        body: &impl Serialize,
    ) -> kube::Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let params = PatchParams::apply(self.field_manager).force();
        let request = Request::new(K::url_path(&(), namespace))
            .patch(name, &params, &Patch::Apply(body))
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<IgnoredAny>(request).await.map(|_| ())
    }

    /// Creates `obj` through `api` (its kind, and its namespace if it has one).
    pub async fn create<K>(&self, api: &Api<K>, obj: &K) -> kube::Result<Created>
    where
        K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    {
        let params = PostParams {
            field_manager: Some(self.field_manager.into()),
            ..Default::default()
        };
        match api.create(&params, obj).await {
            Ok(made) => Ok(Created::Made { uid: made.uid() }),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let by_uid = api
                    .get_opt(&obj.name_any())
                    .await
                    .ok()
                    .flatten()
                    .and_then(|o| o.uid());
                Ok(Created::NameTaken { by_uid })
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the object `name` of `api` if it is still the one with `uid`.
    pub async fn delete<K>(&self, api: &Api<K>, name: &str, uid: Option<String>) -> kube::Result<Deleted>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(Deleted::Deleted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Deleted::AlreadyGone),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Deleted::Replaced),
            Err(e) => Err(e),
        }
    }
}
