//! The shipped manifests, rendered as `kubectl kustomize manifests/` renders them (the
//! resources in order, the namespace set on namespaced objects, the `ferry` image replaced),
//! run the node side so that volumes outlive the node plugin, and work with the store
//! Secret as shipped (a folder): every container that opens the store mounts the same host
//! folder writable, and the users and groups they run as, with the modes ferry creates
//! files and folders with, let each write what the others create.

use ferry_node::store_folder::{DEFAULT_GROUP, FOLDER_BITS, UMASK};
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Kinds kustomize leaves without a namespace.
const CLUSTER_KINDS: [&str; 10] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "CSIDriver",
    "StorageClass",
    "VolumeSnapshotClass",
    "VolumeGroupSnapshotClass",
    "PersistentVolume",
    "PriorityClass",
];

/// What `kubectl kustomize manifests/` prints, for the features the kustomization uses:
/// `resources`, `namespace` (also on ServiceAccount subjects of bindings) and `images`.
fn render() -> Vec<Value> {
    let k = &docs("kustomization.yaml")[0];
    let known = ["apiVersion", "kind", "namespace", "resources", "images"];
    for key in k.as_mapping().expect("kustomization").keys() {
        let key = key.as_str().unwrap_or_default();
        assert!(
            known.contains(&key),
            "the kustomization uses {key}, which this renderer does not do"
        );
    }
    let ns = k["namespace"].as_str().map(str::to_string);
    let images: Vec<(String, String)> = k["images"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|i| {
            let name = i["name"].as_str().expect("image name").to_string();
            let new = i["newName"].as_str().unwrap_or(&name).to_string();
            let to = match i["newTag"].as_str() {
                Some(t) => format!("{new}:{t}"),
                None => new,
            };
            (name, to)
        })
        .collect();
    let mut out = Vec::new();
    for r in k["resources"].as_sequence().expect("resources") {
        for mut d in docs(r.as_str().expect("path")) {
            let kind = d["kind"].as_str().unwrap_or_default().to_string();
            if let Some(ns) = &ns {
                if !CLUSTER_KINDS.contains(&kind.as_str()) {
                    d["metadata"]["namespace"] = Value::from(ns.clone());
                }
                for s in d["subjects"].as_sequence_mut().into_iter().flatten() {
                    if s["kind"] == "ServiceAccount" {
                        s["namespace"] = Value::from(ns.clone());
                    }
                }
            }
            let pod = &mut d["spec"]["template"]["spec"];
            for list in ["containers", "initContainers"] {
                for c in pod[list].as_sequence_mut().into_iter().flatten() {
                    let image = c["image"].as_str().unwrap_or_default().to_string();
                    if let Some((_, to)) = images.iter().find(|(from, _)| *from == image) {
                        c["image"] = Value::from(to.clone());
                    }
                }
            }
            out.push(d);
        }
    }
    out
}

/// The user and group the image runs as when a pod does not say (the Dockerfile's USER).
fn image_user() -> (u32, u32) {
    let text = std::fs::read_to_string(dir().join("../Dockerfile")).expect("Dockerfile");
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("USER");
    let (u, g) = user.trim().split_once(':').expect("USER uid:gid");
    (u.parse().expect("uid"), g.parse().expect("gid"))
}

/// A container of ferry's image, with what it runs as.
#[derive(Debug)]
struct Ferry {
    name: String,
    command: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// The host folder it sees at the store's path, and whether read-only.
    store: Option<(String, bool)>,
    store_env: bool,
}

fn u32_of(v: &Value) -> Option<u32> {
    v.as_u64().map(|n| n as u32)
}

/// Every container running ferry's image, with the store root `root` resolved.
fn ferry_containers(all: &[Value], image: &str, root: &str) -> Vec<Ferry> {
    let (image_uid, image_gid) = image_user();
    let mut out = Vec::new();
    for d in all
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "DaemonSet")
    {
        let pod = &d["spec"]["template"]["spec"];
        let psc = &pod["securityContext"];
        for c in pod["containers"].as_sequence().expect("containers") {
            if c["image"] != image {
                continue;
            }
            let sc = &c["securityContext"];
            let uid = u32_of(&sc["runAsUser"])
                .or(u32_of(&psc["runAsUser"]))
                .unwrap_or(image_uid);
            let gid = u32_of(&sc["runAsGroup"])
                .or(u32_of(&psc["runAsGroup"]))
                .unwrap_or(image_gid);
            let groups = psc["supplementalGroups"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(u32_of)
                .collect();
            let store = c["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let at = m["mountPath"].as_str()?;
                    let rest = Path::new(root).strip_prefix(at).ok()?;
                    let vol = pod["volumes"]
                        .as_sequence()?
                        .iter()
                        .find(|v| v["name"] == m["name"])?;
                    let host: PathBuf = Path::new(vol["hostPath"]["path"].as_str()?)
                        .join(rest)
                        .components()
                        .collect();
                    Some((
                        at.len(),
                        host.to_string_lossy().into_owned(),
                        m["readOnly"] == true,
                    ))
                })
                // The innermost mount is what the container sees there.
                .max_by_key(|(len, ..)| *len)
                .map(|(_, host, ro)| (host, ro));
            let store_env = c["envFrom"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|e| e["secretRef"]["name"] == "ferry-store");
            out.push(Ferry {
                name: format!(
                    "{}/{}",
                    d["metadata"]["name"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default()
                ),
                command: c["args"][0].as_str().unwrap_or_default().to_string(),
                uid,
                gid,
                groups,
                store,
                store_env,
            });
        }
    }
    out
}

/// Whether a process of (`uid`, `gid`, `groups`) may create and remove entries in a folder
/// of `owner` and `group` with `mode` (what renaming over, creating and deleting need).
fn may_write_in(f: &Ferry, owner: u32, group: u32, mode: u32) -> bool {
    f.uid == 0
        || (f.uid == owner && mode & 0o300 == 0o300)
        || ((f.gid == group || f.groups.contains(&group)) && mode & 0o030 == 0o030)
}

#[test]
fn every_container_that_opens_the_folder_store_mounts_it_and_can_write_what_the_others_create() {
    let all = render();
    let secret = all
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "ferry-store")
        .expect("the store Secret");
    assert_eq!(secret["metadata"]["namespace"], "ferry-system");
    let data = &secret["stringData"];
    assert_eq!(
        data["FERRY_STORE_BACKEND"], "fs",
        "the store ships as a folder"
    );
    let root = data["FERRY_STORE_ROOT"].as_str().expect("FERRY_STORE_ROOT");
    let group = data["FERRY_STORE_GROUP"]
        .as_str()
        .map_or(DEFAULT_GROUP, |g| g.parse().expect("a gid"));
    let k = &docs("kustomization.yaml")[0];
    let image = format!(
        "{}:{}",
        k["images"][0]["newName"].as_str().expect("newName"),
        k["images"][0]["newTag"].as_str().expect("newTag")
    );
    let ferry = ferry_containers(&all, &image, root);
    // What opens the store: the CSI plugin (it reads the Secret), the migration controller,
    // and the volume host, whose servers read the plugin's copy of the settings.
    let openers: Vec<&Ferry> = ferry
        .iter()
        .filter(|f| ["plugin", "migration", "volume-host"].contains(&f.command.as_str()))
        .collect();
    let names: Vec<&str> = openers.iter().map(|f| f.name.as_str()).collect();
    for want in [
        "ferry-controller/ferry",
        "ferry-migration/migration",
        "ferry-node/ferry",
        "ferry-volume-host/volume-host",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    let mut host_folder = None;
    for f in &openers {
        let (host, ro) = f
            .store
            .clone()
            .unwrap_or_else(|| panic!("{} does not mount the store folder {root}", f.name));
        assert!(!ro, "{} mounts the store read-only", f.name);
        assert_eq!(
            host_folder.get_or_insert(host.clone()),
            &host,
            "{} mounts another host folder",
            f.name
        );
        if f.command != "volume-host" {
            assert!(f.store_env, "{} does not read the store Secret", f.name);
        }
    }
    // Who prepares the folder: a root process that opens the store.
    assert!(
        openers
            .iter()
            .any(|f| f.uid == 0 && f.command == "plugin" && f.store_env),
        "no root container gives the folder to the store group"
    );
    // What each creates: folders with the set-group-id bit inherited from the store folder
    // (so of the store group) and the umask's bits; each other one must be able to write
    // there.
    let folder_mode = (0o777 & !UMASK) | (FOLDER_BITS & 0o2000);
    for creator in &openers {
        for other in &openers {
            assert!(
                may_write_in(other, creator.uid, group, folder_mode),
                "{} (uid {} gid {}) cannot write in a folder {} made (mode {folder_mode:o}, \
                 group {group})",
                other.name,
                other.uid,
                other.gid,
                creator.name
            );
        }
    }
    // The store folder itself, as the root container leaves it.
    for f in &openers {
        assert!(
            may_write_in(f, 0, group, 0o755 | FOLDER_BITS),
            "{} cannot write in the store folder",
            f.name
        );
    }
}

#[test]
fn the_volume_host_runs_apart_from_the_plugin_and_is_upgraded_by_handover() {
    let all = render();
    let find = |name: &str| {
        all.iter()
            .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("DaemonSet {name} missing"))
    };
    let host = find("ferry-volume-host");
    let node = find("ferry-node");
    let hc = &host["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(hc["args"][0], "volume-host");
    assert!(
        hc["livenessProbe"].is_null(),
        "a probe restarting the host would end every volume on the node"
    );
    let mounts = |c: &Value| -> Vec<(String, String)> {
        c["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap_or_default().to_string(),
                    m["mountPropagation"].as_str().unwrap_or("None").to_string(),
                )
            })
            .collect()
    };
    assert!(
        mounts(hc).contains(&("/var/lib/ferry".into(), "Bidirectional".into())),
        "the host's FUSE mounts must reach the node: {:?}",
        mounts(hc)
    );
    // A rolling update starts the new host before the old one goes: it takes the volumes.
    let ru = &host["spec"]["updateStrategy"]["rollingUpdate"];
    assert_eq!(ru["maxSurge"], 1);
    assert_eq!(ru["maxUnavailable"], 0);
    let grace = host["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("a grace period");
    let wait: u64 = hc["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "FERRY_HANDOVER_WAIT_SECS")
        .and_then(|e| e["value"].as_str()?.parse().ok())
        .expect("FERRY_HANDOVER_WAIT_SECS");
    assert!(grace > wait, "the old host is killed before it waited");
    let plugin = &node["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(plugin["args"][0], "plugin");
    let start = plugin["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "FERRY_START_VOLUME_HOST")
        .map(|e| e["value"].clone());
    assert_eq!(
        start,
        Some(Value::from("false")),
        "a host started from the plugin's container dies with it"
    );
    assert!(
        mounts(plugin)
            .iter()
            .any(|(p, prop)| p == "/var/lib/ferry" && prop != "None"),
        "the plugin must see the host's FUSE mounts"
    );
    // Both find each other through the same state folder.
    let state = |c: &Value| {
        c["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "FERRY_STATE_DIR")
            .map(|e| e["value"].clone())
    };
    assert_eq!(state(hc), state(plugin));
}

/// The node plugin's service account may do exactly what its health Events need, the
/// volume host's pod carries no token.
#[test]
fn the_node_reports_failed_volumes_with_exactly_what_that_needs() {
    let all = render();
    let binding = all
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding" && d["roleRef"]["name"] == "ferry-node-health")
        .expect("a binding of ferry-node-health");
    assert_eq!(binding["subjects"][0]["name"], "ferry-node");
    assert_eq!(binding["subjects"][0]["namespace"], "ferry-system");
    let role = all
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "ferry-node-health")
        .expect("ClusterRole ferry-node-health");
    let mut grants = Vec::new();
    for r in role["rules"].as_sequence().into_iter().flatten() {
        for g in r["apiGroups"].as_sequence().into_iter().flatten() {
            for res in r["resources"].as_sequence().into_iter().flatten() {
                for v in r["verbs"].as_sequence().into_iter().flatten() {
                    grants.push(format!(
                        "{} {}/{}",
                        v.as_str().unwrap_or_default(),
                        g.as_str().unwrap_or_default(),
                        res.as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }
    grants.sort();
    assert_eq!(
        grants,
        [
            "create events.k8s.io/events",
            "get /persistentvolumes",
            "list /persistentvolumes",
            "list /pods",
        ]
    );
    let ds = |name: &str| {
        all.iter()
            .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == name)
            .expect("DaemonSet")["spec"]["template"]["spec"]
            .clone()
    };
    assert_eq!(ds("ferry-node")["automountServiceAccountToken"], true);
    assert_eq!(
        ds("ferry-volume-host")["automountServiceAccountToken"],
        false
    );
}
