//! What shapes a migration's landing, checked and loaded: the namespace mapping, the
//! StorageClass mapping against the destination's classes, and the ResourceTransformations
//! named by `transformSpecs` (from the Migration's own namespace only).

use crate::crd::{ItemStatus, Migration, ResourceTransformation, VolumeInfo};
use crate::error::Result;
use crate::resources::transformations::{self, RuleSet};
use crate::{Ctx, api, kinds_used};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The ResourceTransformations of `spec.transformSpecs`, in order, checked; the reason a
/// run cannot use them otherwise.
///
/// # Errors
/// API errors a retry may cure.
pub async fn load_rules(
    ctx: &Ctx,
    mig: &Migration,
) -> Result<std::result::Result<RuleSet, String>> {
    let ns = mig.namespace().unwrap_or_default();
    let api: kube::Api<ResourceTransformation> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let mut out = Vec::new();
    for name in &mig.spec.transform_specs {
        let Some(rt) = api.get_opt(name).await? else {
            return Ok(Err(format!(
                "ResourceTransformation {name} (spec.transformSpecs) not found in namespace \
                 {ns}: create it there or fix the name"
            )));
        };
        if let Err(why) = transformations::check(&rt.spec.objects) {
            return Ok(Err(format!("ResourceTransformation {ns}/{name}: {why}")));
        }
        out.push((name.clone(), rt.spec.objects));
    }
    Ok(Ok(out))
}

/// Where each ferry volume's claim lands: `(source class, destination class)` by
/// `namespace/claim`, after checking each destination class is there and ferry's.
///
/// # Errors
/// API errors a retry may cure.
pub async fn landing_classes(
    ctx: &Ctx,
    mig: &Migration,
    dest: &kube::Client,
    volumes: &[VolumeInfo],
) -> Result<std::result::Result<BTreeMap<String, (String, String)>, String>> {
    let map = &mig.spec.storage_class_mapping;
    let mut out = BTreeMap::new();
    let mut checked: BTreeMap<String, ()> = BTreeMap::new();
    for v in volumes.iter().filter(|v| v.status != ItemStatus::Skipped) {
        let pvc = api::get(
            &ctx.client,
            &kinds_used::pvc(),
            Some(&v.namespace),
            &v.persistent_volume_claim,
        )
        .await?
        .unwrap_or_default();
        let Some(class) = pvc["spec"]["storageClassName"]
            .as_str()
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        let to = map.get(class).map_or(class, String::as_str);
        if checked.insert(to.to_string(), ()).is_none() {
            let found = match api::get(dest, &kinds_used::storage_class(), None, to).await {
                Ok(found) => found,
                Err(e) if e.api_code() == Some(403) => {
                    return Ok(Err(format!(
                        "the destination account may not read StorageClass {to}: apply \
                         manifests/rbac.yaml there (ferry-migration-destination reads \
                         StorageClasses)"
                    )));
                }
                Err(e) => return Err(e),
            };
            let Some(sc) = found else {
                let how = if map.contains_key(class) {
                    format!("storageClassMapping maps {class} to {to}, which")
                } else {
                    format!(
                        "no storageClassMapping for {class}, and the destination has no class of that name: map it (storageClassMapping: {{{class}: <a ferry class there>}}); {to}"
                    )
                };
                return Ok(Err(format!(
                    "StorageClass {to} for PVC {}/{}: {how} does not exist on the destination",
                    v.namespace, v.persistent_volume_claim
                )));
            };
            let provisioner = sc["provisioner"].as_str().unwrap_or_default();
            if provisioner != ferry_csi::DRIVER_NAME {
                return Ok(Err(format!(
                    "StorageClass {to} on the destination (for PVC {}/{}) is provisioned by \
                     {provisioner:?}, not {}: a ferry volume lands on a ferry class; map \
                     {class} to one with storageClassMapping",
                    v.namespace,
                    v.persistent_volume_claim,
                    ferry_csi::DRIVER_NAME
                )));
            }
            if let Err(e) = ferry_store::VolumeOptions::from_params(&parameters(&sc)) {
                return Ok(Err(format!(
                    "StorageClass {to} on the destination has parameters ferry refuses: {e}"
                )));
            }
        }
        out.insert(
            format!("{}/{}", v.namespace, v.persistent_volume_claim),
            (class.to_string(), to.to_string()),
        );
    }
    Ok(Ok(out))
}

/// A StorageClass's `parameters`, as strings.
pub fn parameters(sc: &serde_json::Value) -> BTreeMap<String, String> {
    sc["parameters"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
