//! The CRD manifests under manifests/crds/ are exactly what the Rust types generate.
//! `hack/gen-crds.sh` (FERRY_WRITE_CRDS=1) rewrites them after a type change.

use std::path::PathBuf;

#[test]
fn crd_files_equal_the_generated_crds() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/crds");
    let write = std::env::var("FERRY_WRITE_CRDS").is_ok_and(|v| v == "1");
    for (file, yaml) in ferry_migration::crd::crd_yaml().expect("crds") {
        let path = dir.join(&file);
        if write {
            std::fs::write(&path, &yaml).expect("write CRD");
            continue;
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run hack/gen-crds.sh", path.display()));
        assert!(
            on_disk == yaml,
            "{file} differs from the types; run hack/gen-crds.sh"
        );
    }
}

#[test]
fn crds_have_a_status_subresource_and_the_ferry_group() {
    for (file, yaml) in ferry_migration::crd::crd_yaml().expect("crds") {
        let doc: serde_yaml::Value = serde_yaml::from_str(
            yaml.split_once("---\n")
                .map_or(yaml.as_str(), |(_, body)| body),
        )
        .expect("yaml");
        assert_eq!(doc["spec"]["group"].as_str(), Some("ferry.dev"), "{file}");
        let version = &doc["spec"]["versions"][0];
        assert_eq!(version["name"].as_str(), Some("v1alpha1"), "{file}");
        // Rules are configuration only (nothing reports on them); every other kind has a
        // status, written through its subresource.
        if !file.starts_with("rules.") {
            assert!(
                version["subresources"]["status"].is_mapping(),
                "{file}: status subresource"
            );
        }
        // Schedule policies are cluster-wide, as Stork's; everything else lives in a namespace.
        let scope = if file.starts_with("schedulepolicies.") {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(doc["spec"]["scope"].as_str(), Some(scope), "{file}");
    }
}

#[test]
fn a_stork_migration_spec_parses_after_changing_api_version() {
    // A Stork Migration as its docs show it, with only apiVersion changed.
    let yaml = r#"
apiVersion: ferry.dev/v1alpha1
kind: Migration
metadata:
  name: mysqlmigration
  namespace: mysql
spec:
  clusterPair: remotecluster
  includeResources: true
  startApplications: true
  namespaces:
  - mysql
  selectors:
    app: mysql
  purgeDeletedResources: false
"#;
    let m: ferry_migration::crd::Migration = serde_yaml::from_str(yaml).expect("parse");
    assert_eq!(m.spec.cluster_pair, "remotecluster");
    assert!(m.spec.include_resources && m.spec.start_applications && m.spec.include_volumes);
    assert_eq!(
        m.spec.selectors.get("app").map(String::as_str),
        Some("mysql")
    );
    // Stork's defaults: includeResources and includeVolumes true, startApplications false.
    let bare: ferry_migration::crd::MigrationSpec =
        serde_yaml::from_str("clusterPair: p\nnamespaces: [a]").expect("parse");
    assert!(bare.include_resources && bare.include_volumes && !bare.start_applications);
}

/// The real API server enforces `x-kubernetes-validations` on update: the Migration CRD must
/// carry the rule that freezes its spec, on the spec itself.
#[test]
fn the_migration_crd_freezes_the_spec() {
    let crd = ferry_migration::crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "Migration")
        .expect("Migration CRD");
    let v = serde_json::to_value(&crd).expect("json");
    let spec = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"]
        .as_array()
        .expect("rules on spec");
    assert!(
        rules.iter().any(|r| r["rule"] == "self == oldSelf"),
        "{rules:?}"
    );
}

/// Formats the API server does not know (`uint64`, `uint32`, ...) make it warn on every apply
/// of the CRDs; only the OpenAPI formats it knows may appear.
#[test]
fn crd_schemas_use_formats_the_api_server_knows() {
    fn walk(v: &serde_json::Value, at: &str, bad: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(f) = m.get("format").and_then(|f| f.as_str())
                    && ![
                        "int32",
                        "int64",
                        "float",
                        "double",
                        "byte",
                        "date",
                        "date-time",
                    ]
                    .contains(&f)
                {
                    bad.push(format!("{at}: {f}"));
                }
                for (k, x) in m {
                    walk(x, &format!("{at}.{k}"), bad);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, at, bad)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    for crd in ferry_migration::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        walk(&serde_json::to_value(&crd).expect("json"), &name, &mut bad);
    }
    assert!(bad.is_empty(), "unknown formats: {bad:?}");
}
