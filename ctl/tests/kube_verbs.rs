//! ferryctl's storkctl verbs against the in-memory API server (standing in for a real one,
//! which cannot run here).

use ferry_kubefake::FakeApi;
use serde_json::json;

#[tokio::test]
async fn create_then_get_migration_prints_storkctls_columns() {
    let api = FakeApi::new();
    let client = api.client();
    let args = ferryctl::migrations::CreateArgs {
        cluster_pair: "remote".into(),
        namespaces: vec!["shop".into(), "blog".into()],
        include_resources: true,
        include_volumes: false,
        start_applications: true,
        ..Default::default()
    };
    let out = ferryctl::migrations::create(&client, "shop", "m1", &args)
        .await
        .expect("create");
    assert_eq!(out, "Migration m1 created successfully\n");
    let m = api
        .get("ferry.dev/migrations", Some("shop"), "m1")
        .expect("stored");
    assert_eq!(m["spec"]["namespaces"], json!(["shop", "blog"]));
    assert_eq!(m["spec"]["includeVolumes"], false);
    assert_eq!(m["spec"]["startApplications"], true);
    // Creating it again says it exists (the API answers 409).
    let err = ferryctl::migrations::create(&client, "shop", "m1", &args)
        .await
        .expect_err("exists");
    assert!(err.to_string().contains("already exists"));

    api.set_status("ferry.dev/migrations", Some("shop"), "m1", json!({
        "stage": "Final", "status": "PartialSuccess",
        "startTimestamp": "2026-01-01T00:00:00Z", "finishTimestamp": "2026-01-01T00:01:05Z",
        "volumes": [{"namespace": "shop", "persistentVolumeClaim": "data", "status": "Successful", "bytesTotal": 10, "bytesDone": 10},
                    {"namespace": "shop", "persistentVolumeClaim": "cache", "status": "Skipped", "reason": "other driver"}],
        "resources": [{"kind": "Deployment", "version": "v1", "group": "apps", "namespace": "shop", "name": "web", "status": "Successful"}]}));
    let table = ferryctl::migrations::get(&client, Some("shop"), None)
        .await
        .expect("get");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CLUSTERPAIR",
            "STAGE",
            "STATUS",
            "VOLUMES",
            "RESOURCES",
            "CREATED",
            "ELAPSED"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..6],
        ["m1", "remote", "Final", "PartialSuccess", "1/2", "1/1"]
    );
    assert_eq!(row.last(), Some(&"1m05s"));
    let one = ferryctl::migrations::get(&client, Some("shop"), Some("m1"))
        .await
        .expect("get one");
    assert!(
        one.contains("volume shop/cache: Skipped 0/0 bytes (other driver)"),
        "{one}"
    );
    let all = ferryctl::migrations::get(&client, None, None)
        .await
        .expect("all");
    assert!(all.starts_with("NAMESPACE"));
    let (done, total, msg) = ferryctl::migrations::progress(
        &serde_json::from_value(
            api.get("ferry.dev/migrations", Some("shop"), "m1")
                .expect("m")["status"]
                .clone(),
        )
        .expect("status"),
    );
    assert_eq!((done, total), (10, 10));
    assert!(msg.starts_with("Final PartialSuccess"));
}

#[tokio::test]
async fn get_clusterpair_prints_statuses_and_reasons() {
    let api = FakeApi::new();
    api.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "remote", "namespace": "shop"},
        "spec": {"secretRef": {"name": "s"}},
        "status": {"schedulerStatus": "Ready", "storageStatus": "Error", "storageReason": "transfer store: bucket not found"}}));
    let out = ferryctl::pairs::get(&api.client(), Some("shop"))
        .await
        .expect("get");
    let mut lines = out.lines();
    assert_eq!(
        lines
            .next()
            .expect("h")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "STORAGE-STATUS", "SCHEDULER-STATUS", "CREATED"]
    );
    assert_eq!(
        &lines
            .next()
            .expect("r")
            .split_whitespace()
            .collect::<Vec<_>>()[..3],
        ["remote", "Error", "Ready"]
    );
    assert!(out.contains("remote: transfer store: bucket not found"));
    assert_eq!(
        ferryctl::pairs::get(&api.client(), Some("empty"))
            .await
            .expect("get"),
        "No resources found.\n"
    );
}

/// Stands for: a merge patch on spec.replicas scales a Deployment; only objects a migration
/// applied (label ferry.dev/migrated) are touched.
#[tokio::test]
async fn activate_and_deactivate_use_the_annotation() {
    let api = FakeApi::new();
    api.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop",
        "labels": {"ferry.dev/migrated": "true"}, "annotations": {"ferry.dev/migrationReplicas": "3"}}, "spec": {"replicas": 0}}));
    api.seed(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "report", "namespace": "shop",
        "labels": {"ferry.dev/migrated": "true"}, "annotations": {"ferry.dev/migrationSuspend": "false"}}, "spec": {"suspend": true}}));
    api.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "local", "namespace": "shop"}, "spec": {"replicas": 0}}));
    let client = api.client();
    let lines = ferryctl::activate::set(&client, &["shop".into()], true)
        .await
        .expect("activate");
    assert_eq!(
        lines,
        [
            "deployment shop/web: replicas 3",
            "cronjob shop/report: suspend false"
        ]
    );
    assert_eq!(
        api.get("apps/deployments", Some("shop"), "web").expect("d")["spec"]["replicas"],
        3
    );
    assert_eq!(
        api.get("batch/cronjobs", Some("shop"), "report")
            .expect("c")["spec"]["suspend"],
        false
    );
    assert_eq!(
        api.get("apps/deployments", Some("shop"), "local")
            .expect("l")["spec"]["replicas"],
        0,
        "not migrated: untouched"
    );
    assert!(
        ferryctl::activate::set(&client, &["shop".into()], true)
            .await
            .expect("again")
            .is_empty(),
        "idempotent"
    );
    let lines = ferryctl::activate::set(&client, &["shop".into()], false)
        .await
        .expect("deactivate");
    assert_eq!(lines.len(), 2);
    let d = api.get("apps/deployments", Some("shop"), "web").expect("d");
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(
        d["metadata"]["annotations"]["ferry.dev/migrationReplicas"],
        "3"
    );
}

#[test]
fn generate_clusterpair_keeps_one_context_and_inlines_files() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ca.crt"), b"CA").expect("write");
    let kubeconfig = r#"
apiVersion: v1
kind: Config
current-context: other
clusters:
- name: dest
  cluster: {server: "https://10.1.2.3:6443", certificate-authority: ca.crt}
- name: other
  cluster: {server: "https://other:6443"}
users:
- name: admin
  user: {token: abc}
- name: someone
  user: {token: zzz}
contexts:
- name: dest
  context: {cluster: dest, user: admin}
- name: other
  context: {cluster: other, user: someone}
"#;
    let args = ferryctl::generate::GenerateArgs {
        name: "remote".into(),
        namespace: "shop".into(),
        kubeconfig: kubeconfig.into(),
        kubeconfig_dir: Some(dir.path().to_path_buf()),
        context: Some("dest".into()),
        transfer: [
            ("backend", "s3"),
            ("bucket", "moves"),
            ("region", "eu-west-1"),
            ("accessKeyId", "AKIA"),
            ("secretAccessKey", "s3cr3t"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        encryption_key: Some(format!("{}\n", "ab".repeat(32))),
        ferry_namespace: None,
    };
    let out = ferryctl::generate::clusterpair(&args).expect("generate");
    let docs: Vec<serde_yaml::Value> = out
        .split("---\n")
        .map(|d| serde_yaml::from_str(d).expect("yaml"))
        .collect();
    assert_eq!(docs[0]["kind"], "Secret");
    assert_eq!(docs[1]["kind"], "ClusterPair");
    assert_eq!(docs[1]["spec"]["secretRef"]["name"], "remote-pair");
    let data = &docs[0]["stringData"];
    assert_eq!(data["bucket"], "moves");
    assert_eq!(data["encryptionKey"].as_str().map(str::len), Some(64));
    let kc: serde_yaml::Value =
        serde_yaml::from_str(data["kubeconfig"].as_str().expect("kc")).expect("kc yaml");
    assert_eq!(kc["current-context"], "dest");
    assert_eq!(kc["clusters"].as_sequence().map(Vec::len), Some(1));
    assert_eq!(
        kc["clusters"][0]["cluster"]["certificate-authority-data"],
        "Q0E="
    );
    assert!(kc["clusters"][0]["cluster"]["certificate-authority"].is_null());
    assert_eq!(kc["users"][0]["user"]["token"], "abc");
    // Settings the controller would refuse are refused here.
    let mut bad = args.clone();
    bad.transfer.remove("bucket");
    assert!(
        ferryctl::generate::clusterpair(&bad)
            .expect_err("no bucket")
            .to_string()
            .contains("bucket")
    );
    let mut bad = args.clone();
    bad.transfer.remove("secretAccessKey");
    assert!(
        ferryctl::generate::clusterpair(&bad)
            .expect_err("no credentials")
            .to_string()
            .contains("environment")
    );
    let mut bad = args;
    bad.context = Some("nope".into());
    assert!(
        ferryctl::generate::clusterpair(&bad)
            .expect_err("ctx")
            .to_string()
            .contains("context nope")
    );
}

/// Defect 8: `generate clusterpair` checks the pair as the controller will before printing
/// it. Against the API stand-in served on 127.0.0.1 (a real HTTP server, standing in for a
/// kube-apiserver) with ferry's CSIDriver and a folder transfer store it passes; with the
/// server gone, or the CSIDriver missing, it fails with the reason.
#[tokio::test]
async fn generate_clusterpair_checks_the_pair_before_printing_it() {
    use ferry_kubefake::FakeApi;
    let dir = tempfile::tempdir().expect("tmp");
    let api = FakeApi::new();
    api.seed(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ferry-system"}}));
    let addr = api.serve().await.expect("serve");
    let args = |kubeconfig: String| ferryctl::generate::GenerateArgs {
        name: "remote".into(),
        namespace: "shop".into(),
        kubeconfig,
        kubeconfig_dir: None,
        context: None,
        transfer: [
            ("backend", "fs".to_string()),
            (
                "root",
                dir.path().join("moves").to_string_lossy().into_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        encryption_key: None,
        ferry_namespace: None,
    };
    let ok = args(FakeApi::kubeconfig(addr));
    let settings = ferryctl::generate::pair_settings(&ok).expect("settings");
    let e = ferryctl::generate::check(&settings, "shop")
        .await
        .expect_err("no CSIDriver yet");
    assert!(e.to_string().contains("ferry is not installed"), "{e}");
    api.seed(serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ferry.csi.dev"}, "spec": {}}));
    ferryctl::generate::check(&settings, "shop")
        .await
        .expect("ready");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gone = args(FakeApi::kubeconfig(closed));
    let e = ferryctl::generate::check(
        &ferryctl::generate::pair_settings(&gone).expect("settings"),
        "shop",
    )
    .await
    .expect_err("unreachable");
    let text = e.to_string();
    assert!(
        text.contains("did not answer") && text.contains("--skip-check"),
        "{text}"
    );
}

#[tokio::test]
async fn schedule_verbs_create_list_suspend_and_resume() {
    use ferryctl::schedules::{
        PolicyArgs, create_policy, create_schedule, get_policies, get_schedules, set_suspend,
    };
    let api = FakeApi::new();
    let client = api.client();
    // A bad policy is refused before it reaches the API, naming the field.
    let bad = PolicyArgs {
        policy_type: "daily".into(),
        time: Some("25:00".into()),
        ..Default::default()
    };
    let err = create_policy(&client, "nightly", &bad)
        .await
        .expect_err("bad");
    assert!(err.to_string().contains("policy.daily.time"), "{err}");
    assert!(
        api.get("ferry.dev/schedulepolicies", None, "nightly")
            .is_none()
    );
    let good = PolicyArgs {
        policy_type: "interval".into(),
        interval_minutes: Some(15),
        retain: Some(4),
        ..Default::default()
    };
    assert_eq!(
        create_policy(&client, "every15", &good)
            .await
            .expect("create"),
        "Schedule policy every15 created successfully\n"
    );
    let stored = api
        .get("ferry.dev/schedulepolicies", None, "every15")
        .expect("stored");
    assert_eq!(
        stored["policy"]["interval"],
        json!({"intervalMinutes": 15, "retain": 4})
    );
    let table = get_policies(&client).await.expect("get");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "INTERVAL-MINUTES", "DAILY", "WEEKLY", "MONTHLY"]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(row, ["every15", "15", "N/A", "N/A", "N/A"]);

    let args = ferryctl::migrations::CreateArgs {
        cluster_pair: "remote".into(),
        namespaces: vec!["shop".into()],
        include_resources: true,
        include_volumes: true,
        start_applications: false,
        ..Default::default()
    };
    create_schedule(&client, "shop", "standby", "every15", &args, false)
        .await
        .expect("create schedule");
    let s = api
        .get("ferry.dev/migrationschedules", Some("shop"), "standby")
        .expect("stored");
    assert_eq!(s["spec"]["template"]["spec"]["clusterPair"], "remote");
    api.set_status(
        "ferry.dev/migrationschedules",
        Some("shop"),
        "standby",
        json!({
        "lastSuccessTime": "2026-12-02T10:15:00Z", "lastSuccessDuration": "1m05s"}),
    );
    let table = get_schedules(&client, Some("shop")).await.expect("get");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "POLICYNAME",
            "CLUSTERPAIR",
            "SUSPEND",
            "LAST-SUCCESS-TIME",
            "LAST-SUCCESS-DURATION"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        row,
        [
            "standby",
            "every15",
            "remote",
            "false",
            "2026-12-02T10:15:00Z",
            "1m05s"
        ]
    );

    set_suspend(&client, "shop", "standby", true)
        .await
        .expect("suspend");
    let s = api
        .get("ferry.dev/migrationschedules", Some("shop"), "standby")
        .expect("stored");
    assert_eq!(s["spec"]["suspend"], true);
    set_suspend(&client, "shop", "standby", false)
        .await
        .expect("resume");
    let s = api
        .get("ferry.dev/migrationschedules", Some("shop"), "standby")
        .expect("stored");
    assert!(
        s["spec"].get("suspend").is_none(),
        "resuming removes the field: {s}"
    );
    let err = set_suspend(&client, "shop", "nope", true)
        .await
        .expect_err("missing");
    assert!(err.to_string().contains("not found"), "{err}");

    // get migration --migration-schedule lists that schedule's runs only.
    api.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration",
        "metadata": {"name": "standby-interval-20261202101500", "namespace": "shop",
                     "labels": {"ferry.dev/migration-schedule": "standby"}},
        "spec": {"clusterPair": "remote", "namespaces": ["shop"]}}),
    );
    api.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration",
        "metadata": {"name": "by-hand", "namespace": "shop"},
        "spec": {"clusterPair": "remote", "namespaces": ["shop"]}}),
    );
    let table = ferryctl::migrations::get_selected(&client, Some("shop"), None, Some("standby"))
        .await
        .expect("get");
    assert!(table.contains("standby-interval-20261202101500"), "{table}");
    assert!(!table.contains("by-hand"), "{table}");
}

/// `create clusterpair` generates the pair for the destination's kubeconfig and applies its
/// Secret and ClusterPair on the source (server-side apply, so running it again updates).
#[tokio::test]
async fn create_clusterpair_applies_the_secret_and_the_pair_on_the_source() {
    let source = FakeApi::new();
    let client = source.client();
    let kubeconfig = r#"
apiVersion: v1
kind: Config
current-context: dest
clusters:
- name: dest
  cluster: {server: "https://10.1.2.3:6443"}
users:
- name: admin
  user: {token: abc}
contexts:
- name: dest
  context: {cluster: dest, user: admin}
"#;
    let args = ferryctl::generate::GenerateArgs {
        name: "remote".into(),
        namespace: "shop".into(),
        kubeconfig: kubeconfig.into(),
        kubeconfig_dir: None,
        context: None,
        transfer: [
            ("backend", "s3"),
            ("bucket", "moves"),
            ("region", "eu-west-1"),
            ("accessKeyId", "AKIA"),
            ("secretAccessKey", "s3cr3t"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        encryption_key: None,
        ferry_namespace: None,
    };
    for _ in 0..2 {
        let out = ferryctl::generate::create(&client, &args)
            .await
            .expect("create");
        assert_eq!(out, "ClusterPair remote created successfully\n");
    }
    let pair = source
        .get("ferry.dev/clusterpairs", Some("shop"), "remote")
        .expect("pair applied");
    assert_eq!(pair["spec"]["secretRef"]["name"], "remote-pair");
    let secret = source
        .get("/secrets", Some("shop"), "remote-pair")
        .expect("secret applied");
    let data = secret["data"].as_object().expect("data");
    for key in ["kubeconfig", "backend", "bucket", "secretAccessKey"] {
        assert!(data.contains_key(key), "{key} in {secret}");
    }
}

#[tokio::test]
async fn perform_failover_and_failback_create_actions_and_follow_their_steps() {
    use ferry_migration::crd::{ActionType, ItemStatus};
    let api = FakeApi::new();
    let client = api.client();
    let args = ferryctl::actions::PerformArgs {
        migration_schedule: "nightly".into(),
        sync_first: true,
        name: Some("fo".into()),
        ..Default::default()
    };
    // No pair back to the source: a failover acts on this cluster alone, a failback refuses.
    ferryctl::actions::perform(&client, "shop", ActionType::Failover, &args)
        .await
        .expect("failover");
    let a = api
        .get("ferry.dev/actions", Some("shop"), "fo")
        .expect("action");
    assert_eq!(a["spec"]["actionType"], "failover");
    let p = &a["spec"]["actionParameter"]["failoverParameter"];
    assert_eq!(p["migrationScheduleReference"], "nightly");
    assert_eq!(p["syncFirst"], true);
    assert!(p["clusterPair"].is_null());
    let err = ferryctl::actions::perform(&client, "shop", ActionType::Failback, &args)
        .await
        .expect_err("no pair");
    assert!(err.to_string().contains("--cluster-pair"), "{err}");

    // The namespace's only pair is the default; two need naming.
    api.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "back", "namespace": "shop"}, "spec": {"secretRef": {"name": "s"}}}));
    let fb = ferryctl::actions::PerformArgs {
        name: Some("fb".into()),
        ..args.clone()
    };
    ferryctl::actions::perform(&client, "shop", ActionType::Failback, &fb)
        .await
        .expect("failback");
    let a = api
        .get("ferry.dev/actions", Some("shop"), "fb")
        .expect("action");
    assert_eq!(
        a["spec"]["actionParameter"]["failbackParameter"]["clusterPair"],
        "back"
    );
    api.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "other", "namespace": "shop"}, "spec": {"secretRef": {"name": "s"}}}));
    let two = ferryctl::actions::PerformArgs {
        name: Some("fb2".into()),
        ..args.clone()
    };
    let err = ferryctl::actions::perform(&client, "shop", ActionType::Failback, &two)
        .await
        .expect_err("two pairs");
    assert!(err.to_string().contains("back, other"), "{err}");

    // Following: each step's change is printed once, and the wait ends with the Action.
    api.set_status("ferry.dev/actions", Some("shop"), "fo", json!({
        "status": "Successful", "currentStep": "ActivateDestination",
        "steps": [{"name": "SuspendSchedule", "status": "Skipped", "message": "no clusterPair reaches the source cluster"},
                  {"name": "ActivateDestination", "status": "Successful", "message": "started on the destination: deployment shop/web: replicas 3"}]}));
    let mut lines = Vec::new();
    let mut last = None;
    let st = ferryctl::actions::wait(
        &client,
        "shop",
        "fo",
        std::time::Duration::from_millis(1),
        |st| {
            lines.extend(ferryctl::actions::step_lines(last.as_ref(), st));
            last = Some(st.clone());
        },
    )
    .await
    .expect("wait");
    assert_eq!(st.status, ItemStatus::Successful);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("replicas 3"), "{lines:?}");
    let table = ferryctl::actions::get(&client, Some("shop"))
        .await
        .expect("get");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("fo") && table.contains("failover") && table.contains("Successful"),
        "{table}"
    );
    assert!(ferryctl::actions::describe(&st).contains("ActivateDestination"));
}

#[tokio::test]
async fn create_migration_shaping_flags_reach_the_spec_and_a_plan_prints() {
    use ferryctl::migrations::parse_mapping;
    let api = FakeApi::new();
    let client = api.client();
    let args = ferryctl::migrations::CreateArgs {
        cluster_pair: "remote".into(),
        namespaces: vec!["shop".into()],
        include_resources: true,
        include_volumes: true,
        namespace_mapping: parse_mapping("--namespace-mapping", &["shop=shop-dr".into()])
            .expect("map"),
        storage_class_mapping: parse_mapping(
            "--storage-class-mapping",
            &["ferry=fast,slow=fast".into()],
        )
        .expect("map"),
        transform_specs: vec!["lb".into()],
        dry_run: true,
        ..Default::default()
    };
    ferryctl::migrations::create(&client, "shop", "plan", &args)
        .await
        .expect("create");
    let m = api
        .get("ferry.dev/migrations", Some("shop"), "plan")
        .expect("stored");
    assert_eq!(m["spec"]["namespaceMapping"], json!({"shop": "shop-dr"}));
    assert_eq!(
        m["spec"]["storageClassMapping"],
        json!({"ferry": "fast", "slow": "fast"})
    );
    assert_eq!(m["spec"]["transformSpecs"], json!(["lb"]));
    assert_eq!(m["spec"]["dryRun"], true);
    let e = parse_mapping("--namespace-mapping", &["shop".into()]).expect_err("no =");
    assert!(e.to_string().contains("--namespace-mapping"), "{e}");
    assert!(e.to_string().contains("source=destination"), "{e}");

    api.set_status("ferry.dev/migrations", Some("shop"), "plan", json!({
        "stage": "Final", "status": "Successful", "finishTimestamp": "2026-01-01T00:00:01Z",
        "plan": {"bytesToMove": 131072, "creates": 1, "updates": 0, "conflicts": 1,
            "volumes": [{"namespace": "shop", "persistentVolumeClaim": "data", "destinationNamespace": "shop-dr",
                         "storageClass": "ferry", "destinationStorageClass": "fast", "sizeBytes": 1048576,
                         "bytesToMove": 131072, "moves": true}],
            "resources": [
                {"version": "v1", "kind": "Service", "namespace": "shop", "destinationNamespace": "shop-dr", "name": "web",
                 "action": "Create", "changes": [{"transformation": "lb", "path": "spec.type", "before": "\"NodePort\"", "after": "\"LoadBalancer\""}]},
                {"version": "v1", "kind": "ConfigMap", "namespace": "shop", "destinationNamespace": "shop-dr", "name": "local",
                 "action": "Conflict", "reason": "exists on the destination and no migration brought it"}]}}));
    let st = ferryctl::migrations::wait(
        &client,
        "shop",
        "plan",
        std::time::Duration::from_millis(1),
        |_| {},
    )
    .await
    .expect("wait");
    let text = ferryctl::migrations::describe_plan(&st);
    for want in [
        "shop/data",
        "shop-dr",
        "ferry -> fast",
        "131072",
        "shop-dr/web",
        "create",
        "spec.type (lb)",
        "\"NodePort\" -> \"LoadBalancer\"",
        "conflict",
        "1 to create, 0 to update, 1 conflict(s)",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

#[tokio::test]
async fn clone_namespace_creates_an_application_clone_and_describes_its_end() {
    let api = FakeApi::new();
    let client = api.client();
    let args = ferryctl::clones::CloneArgs {
        source: "shop".into(),
        destination: "shop-staging".into(),
        ..Default::default()
    };
    let name = ferryctl::clones::create(&client, "ferry-system", &args)
        .await
        .expect("create");
    assert_eq!(name, "shop-to-shop-staging");
    let c = api
        .get("ferry.dev/applicationclones", Some("ferry-system"), &name)
        .expect("stored");
    assert_eq!(c["spec"]["sourceNamespace"], "shop");
    assert_eq!(c["spec"]["destinationNamespace"], "shop-staging");
    assert_eq!(c["spec"]["replacePolicy"], "Retain");
    let again = ferryctl::clones::create(&client, "ferry-system", &args).await;
    assert!(
        again
            .expect_err("exists")
            .to_string()
            .contains("already exists")
    );
    api.set_status("ferry.dev/applicationclones", Some("ferry-system"), &name, json!({
        "stage": "Final", "status": "PartialSuccess", "reason": "some claims were skipped",
        "finishTimestamp": "2026-01-01T00:00:01Z",
        "volumes": [{"persistentVolumeClaim": "data", "status": "Successful", "persistentVolume": "ferry-clone-1"},
                    {"persistentVolumeClaim": "cache", "status": "Skipped", "reason": "not a ferry volume"}],
        "resources": [{"version": "v1", "kind": "ConfigMap", "name": "a", "status": "Successful"},
                      {"version": "v1", "kind": "Secret", "name": "b", "status": "Skipped", "reason": "exists in shop-staging"}]}));
    let st = ferryctl::clones::wait(
        &client,
        "ferry-system",
        &name,
        std::time::Duration::from_millis(1),
    )
    .await
    .expect("wait");
    let text = ferryctl::clones::describe(&st);
    for want in [
        "PartialSuccess: some claims were skipped",
        "volume data: Successful (PV ferry-clone-1)",
        "volume cache: Skipped (not a ferry volume)",
        "1 object(s) copied",
        "Secret b: Skipped (exists in shop-staging)",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}
