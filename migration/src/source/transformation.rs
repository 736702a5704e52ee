//! ResourceTransformation reconciler: checks the rules and says in the status whether a
//! Migration can use them (`Ready`) or what is wrong (`Failed`). The status is written only
//! when the verdict changes, so its own write (a watch event) does not loop.

use crate::crd::{ResourceTransformation, ResourceTransformationStatus};
use crate::error::Result;
use crate::resources::transformations;
use crate::runtime::{Next, Pass, Reconciler};

/// The verdict on a set of rules.
pub fn verdict(rt: &ResourceTransformation) -> ResourceTransformationStatus {
    match transformations::check(&rt.spec.objects) {
        Ok(()) => ResourceTransformationStatus {
            status: Some("Ready".into()),
            reason: None,
        },
        Err(why) => ResourceTransformationStatus {
            status: Some("Failed".into()),
            reason: Some(why),
        },
    }
}

/// The ResourceTransformation reconciler: the verdict on its rules in its status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Transformations;

impl Reconciler for Transformations {
    type K = ResourceTransformation;
    type S = ResourceTransformationStatus;
    const KIND: &'static str = "ResourceTransformation";

    fn api(client: &kube::Client, ns: Option<&str>) -> kube::Api<ResourceTransformation> {
        kube::Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &ResourceTransformation) -> ResourceTransformationStatus {
        obj.status.clone().unwrap_or_default()
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        pass.status = verdict(&pass.obj);
        Ok(Next::Idle)
    }
}
