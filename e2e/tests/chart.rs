//! The Helm chart, with a real Helm 3 and a real kube-apiserver: lint, schema, rendering with
//! default and non-default values, server-side dry-run apply, RBAC checked with `kubectl auth
//! can-i` as the chart's own service accounts, and the agent's admission policy with real tokens.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use bgpvpn_testkit::{built_binary, client_or_skip, kubectl, repo_root, unique_name};

const CHART: &str = "charts/bgpvpn-operator";
const CUSTOM_VALUES: &str = "e2e/tests/fixtures/values-openstack.yaml";

fn helm_path() -> Option<&'static PathBuf> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = HELM.get_or_init(|| {
        let out = Command::new(repo_root().join("hack/testbed/get-helm.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    });
    match found {
        Ok(p) => Some(p),
        Err(e) if std::env::var("BGPVPN_REQUIRE_APISERVER").as_deref() == Ok("1") => panic!("no helm: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no helm binary ({e})");
            None
        }
    }
}

/// Runs helm from the repository root with a scratch HOME, so its cache stays out of the repo.
fn helm(args: &[&str]) -> Option<Output> {
    let helm = helm_path()?;
    let home = tempfile::tempdir().unwrap();
    Some(
        Command::new(helm)
            .args(args)
            .current_dir(repo_root())
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

fn stdout_ok(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn render(release: &str, namespace: &str, values: Option<&str>) -> Option<String> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    if let Some(v) = values {
        args.extend(["--values", v]);
    }
    Some(stdout_ok("helm template", helm(&args)?))
}

#[test]
fn chart_lints_strict_with_default_and_custom_values() {
    let Some(out) = helm(&["lint", "--strict", CHART]) else {
        return;
    };
    stdout_ok("helm lint --strict (defaults)", out);
    stdout_ok(
        "helm lint --strict (custom)",
        helm(&["lint", "--strict", CHART, "--values", CUSTOM_VALUES]).unwrap(),
    );
}

#[test]
fn values_schema_refuses_bad_values() {
    let cases: [(&[&str], &str); 9] = [
        (&["--set", "underlay.asn=0"], "/underlay/asn"),
        (
            &["--set", "apiServer.host=10.0.0.1"],
            "apiServer.port is required",
        ),
        (
            &[
                "--set",
                "apiServer.host=10.0.0.1",
                "--set",
                "apiServer.port=6443x",
            ],
            "/apiServer/port",
        ),
        (
            &["--set", "underlay.neighbors[0].address=172.30.0.2"],
            "remoteAsn",
        ),
        (&["--set", "operator.logFormat=xml"], "/operator/logFormat"),
        (
            &[
                "--set",
                "openstack.enabled=true",
                "--set",
                "openstack.pollIntervalSeconds=0",
            ],
            "/openstack/pollIntervalSeconds",
        ),
        (
            &[
                "--set",
                "openstack.evpnRouters.enabled=true",
                "--set",
                "openstack.evpnRouters.bgpAsn=0",
            ],
            "/openstack/evpnRouters/bgpAsn",
        ),
        // FRR's node directories, mounted by two pods: absolute paths only
        (&["--set", "frr.hostConfigDir=var/lib/frr"], "/frr/hostConfigDir"),
        (&["--set", "frr.hostRunDir="], "/frr/hostRunDir"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["template", "t", CHART];
        args.extend(extra);
        let Some(out) = helm(&args) else { return };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm accepted {extra:?}");
        assert!(stderr.contains(needle), "{extra:?}: {needle:?} not in {stderr}");
    }
}

/// On a cluster without kube-proxy the operator and every agent are pointed at the apiserver
/// itself; by default neither container names it (the in-cluster `kubernetes` Service).
#[test]
fn an_apiserver_address_reaches_the_operator_and_the_agent() {
    let args = [
        "template",
        "t",
        CHART,
        "--set",
        "apiServer.host=10.98.0.1",
        "--set",
        "apiServer.port=6443",
    ];
    let Some(out) = helm(&args) else { return };
    let manifest = stdout_ok("helm template (apiServer)", out);
    for kind in ["Deployment", "DaemonSet"] {
        let doc = manifest
            .split("\n---")
            .find(|d| d.contains(&format!("\nkind: {kind}\n")))
            .unwrap_or_else(|| panic!("no {kind} in {manifest}"));
        assert!(
            doc.contains("- name: KUBERNETES_SERVICE_HOST\n              value: \"10.98.0.1\"")
                && doc.contains("- name: KUBERNETES_SERVICE_PORT\n              value: \"6443\""),
            "{kind}: {doc}"
        );
    }
    let defaults = render("t", "default", None).unwrap();
    assert!(!defaults.contains("KUBERNETES_SERVICE_HOST"));
}

#[test]
fn rendered_manifests_are_current() {
    if helm_path().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("m.yaml");
    let out = Command::new(repo_root().join("hack/render-manifests.sh"))
        .arg(&fresh)
        .output()
        .unwrap();
    stdout_ok("hack/render-manifests.sh", out);
    let committed =
        std::fs::read_to_string(repo_root().join("charts/rendered/bgpvpn-operator.yaml")).unwrap();
    let fresh = std::fs::read_to_string(&fresh).unwrap();
    // the header names the output path; compare the manifests themselves
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        body(&committed) == body(&fresh),
        "charts/rendered/ is stale: run hack/render-manifests.sh and commit"
    );
}

/// The operator's config.yaml as the chart renders it must be accepted by the operator itself
/// (it refuses unknown fields), so chart and binary cannot drift apart.
#[test]
fn rendered_operator_config_is_accepted_by_the_operator() {
    for values in [None, Some(CUSTOM_VALUES)] {
        let Some(manifest) = render("cfg", "bgpvpn-system", values) else {
            return;
        };
        let configmap = manifest
            .split("\n---")
            .map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).unwrap_or(serde_yaml::Value::Null))
            .find(|doc| doc["kind"] == "ConfigMap" && doc["data"]["config.yaml"].is_string())
            .expect("the chart renders the operator's ConfigMap");
        let config = configmap["data"]["config.yaml"].as_str().unwrap();
        // a 4-byte AS stays an integer
        assert_eq!(
            values.is_some(),
            config.contains("evpnRouters:\n    bgpAsn: 4200000099"),
            "{config}"
        );
        check_operator_config(
            &format!("chart {values:?}"),
            configmap["data"]["config.yaml"].as_str().unwrap(),
        );
    }
    // and the ConfigMap of the OpenStack sync example
    let example =
        std::fs::read_to_string(repo_root().join("examples/openstack-sync/openstack-sync.yaml")).unwrap();
    let configmap = example
        .split("\n---")
        .map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).unwrap_or(serde_yaml::Value::Null))
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("the example has the operator's ConfigMap");
    check_operator_config(
        "examples/openstack-sync",
        configmap["data"]["config.yaml"].as_str().unwrap(),
    );
}

fn check_operator_config(what: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(built_binary("bgpvpn-operator"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    stdout_ok(&format!("bgpvpn-operator check-config ({what})"), out);
}

fn create_namespace(name: &str) {
    stdout_ok(
        "kubectl create namespace",
        kubectl(&["create", "namespace", name]),
    );
}

fn apply(manifest: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, manifest).unwrap();
    let mut args = vec!["apply", "-f", file.to_str().unwrap()];
    args.extend(extra);
    kubectl(&args)
}

#[tokio::test]
async fn chart_applies_to_the_real_apiserver_server_side_dry_run() {
    let _client = client_or_skip!();
    for values in [None, Some(CUSTOM_VALUES)] {
        let ns = unique_name("chart");
        create_namespace(&ns);
        let Some(manifest) = render(&unique_name("rel"), &ns, values) else {
            return;
        };
        let out = stdout_ok(
            "kubectl apply --dry-run=server",
            apply(&manifest, &["--dry-run=server"]),
        );
        for kind in [
            "deployment.apps",
            "daemonset.apps",
            "configmap",
            "clusterrole.rbac.authorization.k8s.io",
            "service",
        ] {
            assert!(
                out.contains(kind),
                "{kind} missing from dry-run ({values:?}):\n{out}"
            );
        }
    }
}

const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Only the RBAC part of a rendered release.
fn rbac_only(manifest: &str) -> String {
    only_kinds(manifest, &RBAC_KINDS)
}

/// The RBAC part and the admission policy of a rendered release.
fn rbac_and_policy(manifest: &str) -> String {
    let mut kinds = RBAC_KINDS.to_vec();
    kinds.extend(["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);
    only_kinds(manifest, &kinds)
}

fn only_kinds(manifest: &str, keep: &[&str]) -> String {
    manifest
        .split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| keep.iter().any(|k| l == format!("kind: {k}")))
        })
        .collect::<Vec<_>>()
        .join("\n---")
}

/// `resource` may carry a subresource after a space: `"evpnnodestates.bgpvpn.io/x status"`.
fn can_i(who: &str, namespace: &str, verb: &str, resource: &str) -> bool {
    let mut args = vec!["auth", "can-i", verb];
    let subresource;
    match resource.split_once(' ') {
        Some((r, sub)) => {
            subresource = format!("--subresource={sub}");
            args.extend([r, subresource.as_str()]);
        }
        None => args.push(resource),
    }
    args.extend(["--as", who, "-n", namespace]);
    let out = kubectl(&args);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {verb} {resource} --as {who}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test]
async fn rbac_is_least_privilege() {
    let _client = client_or_skip!();
    let ns = unique_name("rbac");
    let release = unique_name("rel");
    create_namespace(&ns);
    let Some(manifest) = render(&release, &ns, Some(CUSTOM_VALUES)) else {
        return;
    };
    stdout_ok("kubectl apply (RBAC)", apply(&rbac_only(&manifest), &[]));
    let agent = format!("system:serviceaccount:{ns}:{release}-bgpvpn-operator-agent");
    let operator = format!("system:serviceaccount:{ns}:{release}-bgpvpn-operator-operator");

    // agent: its node state and that state's status, nothing else
    for (verb, resource, allowed) in [
        ("get", "evpnnodestates.bgpvpn.io/node-a", true),
        ("watch", "evpnnodestates.bgpvpn.io", true),
        ("patch", "evpnnodestates.bgpvpn.io/node-a status", true),
        ("patch", "evpnnodestates.bgpvpn.io/node-a", false),
        ("delete", "evpnnodestates.bgpvpn.io/node-a", false),
        ("get", "secrets", false),
        ("get", "secrets/my-clouds", false),
        ("list", "pods", false),
        ("get", "bgpvpns.bgpvpn.io", false),
        ("create", "vnibindings.bgpvpn.io", false),
        // its own DaemonSet (an uninstall deletes it), read only, and no other
        (
            "watch",
            &format!("daemonsets.apps/{release}-bgpvpn-operator-agent"),
            true,
        ),
        (
            "patch",
            &format!("daemonsets.apps/{release}-bgpvpn-operator-agent"),
            false,
        ),
        ("get", "daemonsets.apps/other", false),
    ] {
        assert_eq!(
            can_i(&agent, &ns, verb, resource),
            allowed,
            "agent {verb} {resource}"
        );
    }

    // operator: reads the cluster, owns node-state specs, writes CR status, reads one Secret
    for (verb, resource, allowed) in [
        ("list", "pods", true),
        ("watch", "nodes", true),
        ("create", "evpnnodestates.bgpvpn.io", true),
        ("delete", "evpnnodestates.bgpvpn.io", true),
        ("patch", "evpnnodestates.bgpvpn.io/node-a status", false), // the agents' part
        ("patch", "vnibindings.bgpvpn.io/b status", true),
        ("get", "secrets/my-clouds", true),
        ("get", "secrets/someone-elses", false),
        ("list", "secrets", false),
        ("update", "leases.coordination.k8s.io", true),
        ("delete", "pods", false),
        ("create", "bgpvpns.bgpvpn.io", true), // the OpenStack sync is on in these values
    ] {
        assert_eq!(
            can_i(&operator, &ns, verb, resource),
            allowed,
            "operator {verb} {resource}"
        );
    }
    // the Secret is readable only in the release namespace
    assert!(!can_i(&operator, "default", "get", "secrets/my-clouds"));

    // without the OpenStack sync the operator can neither read the Secret nor create BGPVPNs
    let ns2 = unique_name("rbac");
    let release2 = unique_name("rel");
    create_namespace(&ns2);
    let manifest = render(&release2, &ns2, None).unwrap();
    stdout_ok(
        "kubectl apply (RBAC, defaults)",
        apply(&rbac_only(&manifest), &[]),
    );
    let operator2 = format!("system:serviceaccount:{ns2}:{release2}-bgpvpn-operator-operator");
    assert!(!can_i(&operator2, &ns2, "get", "secrets/openstack-clouds"));
    assert!(!can_i(&operator2, &ns2, "create", "bgpvpns.bgpvpn.io"));
    assert!(can_i(&operator2, &ns2, "patch", "bgpvpns.bgpvpn.io/x status"));
    assert!(
        !can_i(&operator2, &ns2, "patch", "bgpvpns.bgpvpn.io/x"),
        "spec stays the admin's (GitOps)"
    );
}

/// The chart's ValidatingAdmissionPolicy and the manifests it writes, with real tokens: a token
/// bound to an agent pod on node A writes node A's EVPNNodeState status and is refused on node
/// B's; a token of the agent's service account bound to no pod is refused everywhere; the
/// operator is not affected.
#[tokio::test]
async fn an_agent_writes_only_its_own_nodes_status() {
    use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let client = client_or_skip!();
    let ns = unique_name("ownnode");
    let release = unique_name("rel");
    create_namespace(&ns);
    let Some(manifest) = render(&release, &ns, None) else {
        return;
    };
    stdout_ok(
        "kubectl apply (RBAC and admission policy)",
        apply(&rbac_and_policy(&manifest), &[]),
    );
    let agent_sa = format!("{release}-bgpvpn-operator-agent");

    let (node_a, node_b) = (unique_name("node-a"), unique_name("node-b"));
    let nodes: Api<Node> = Api::all(client.clone());
    let states: Api<bgpvpn_crds::EvpnNodeState> = Api::all(client.clone());
    for node in [&node_a, &node_b] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": node}})).unwrap(),
            )
            .await
            .unwrap();
        let state = serde_json::json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "metadata": {"name": node},
            "spec": {"underlay": {"asn": 65001, "routerId": "172.30.0.1", "vtepIp": "172.30.0.1", "neighbors": []}}});
        states
            .create(&PostParams::default(), &serde_json::from_value(state).unwrap())
            .await
            .unwrap();
    }
    // the agent's pod on node A, as the DaemonSet would make it
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "agent-a"},
            "spec": {"nodeName": node_a, "serviceAccountName": agent_sa, "containers": [{"name": "agent", "image": "registry.invalid/agent:1"}]}})).unwrap())
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let token = |bound: Option<BoundObjectReference>| {
        let accounts = accounts.clone();
        let agent_sa = agent_sa.clone();
        async move {
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    bound_object_ref: bound,
                    expiration_seconds: Some(600),
                },
                ..Default::default()
            };
            let answer = accounts
                .create_token_request(&agent_sa, &PostParams::default(), &request)
                .await
                .unwrap();
            answer.status.expect("a token").token
        }
    };
    let client_with = |token: String| async move {
        let server = bgpvpn_testkit::server().unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&server.kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        kube::Client::try_from(config).unwrap()
    };
    let bound_to_pod = BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
    };
    let agent_a = client_with(token(Some(bound_to_pod)).await).await;
    let unbound = client_with(token(None).await).await;

    let write_status = |client: kube::Client, node: String| async move {
        let api: Api<bgpvpn_crds::EvpnNodeState> = Api::all(client);
        let status = serde_json::json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "status": {"programmedVnis": 0}});
        api.patch_status(
            &node,
            &PatchParams::apply("bgpvpn-agent").force(),
            &Patch::Apply(&status),
        )
        .await
    };
    // the API server loads a new policy asynchronously: once it refuses a token bound to no
    // node, the policy is in force (without the policy that write is accepted and this times out)
    bgpvpn_testkit::wait_for(
        "the admission policy in force",
        std::time::Duration::from_secs(30),
        || async { write_status(unbound.clone(), node_b.clone()).await.err() },
    )
    .await;
    write_status(agent_a.clone(), node_a.clone())
        .await
        .expect("the agent on node A writes node A's status");
    let refused = |res: Result<bgpvpn_crds::EvpnNodeState, kube::Error>, what: &str| match res {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{what}: {e:?}");
            assert!(
                e.message.contains("only the EVPNNodeState of its own node"),
                "{what}: {}",
                e.message
            );
            e.message
        }
        other => panic!("{what} was not refused: {other:?}"),
    };
    let message = refused(
        write_status(agent_a.clone(), node_b.clone()).await,
        "the agent on node A writing node B's status",
    );
    assert!(message.contains(&format!("bound to node {node_a}")), "{message}");
    refused(
        write_status(unbound, node_a.clone()).await,
        "a token bound to no pod writing node A's status",
    );
    // the operator (here: the admin) is not the agent: not matched
    write_status(client.clone(), node_b.clone())
        .await
        .expect("another writer of node B's status");
}

/// The router pods (FRR) restart only when what FRR runs changes: a new chart version or an
/// agent value leaves their pod template as it was, an FRR value does not.
#[test]
fn only_frr_changes_restart_the_router_pods() {
    let router_template = |chart: &str, extra: &[&str]| -> Option<String> {
        let mut args = vec!["template", "t", chart, "--namespace", "ns"];
        args.extend(extra);
        let manifest = stdout_ok("helm template", helm(&args)?);
        let doc = manifest
            .split("\n---")
            .find(|d| d.contains("kind: DaemonSet") && d.contains("name: t-bgpvpn-operator-router"))
            .expect("the router DaemonSet")
            .to_string();
        let ds: serde_yaml::Value = serde_yaml::from_str(&doc).unwrap();
        Some(serde_yaml::to_string(&ds["spec"]["template"]).unwrap())
    };
    let Some(base) = router_template(CHART, &[]) else {
        return;
    };
    // the same chart under another version
    let copy = tempfile::tempdir().unwrap();
    let bumped = copy.path().join("bgpvpn-operator");
    let cp = Command::new("cp")
        .args(["-r", CHART, &bumped.display().to_string()])
        .current_dir(repo_root())
        .status()
        .unwrap();
    assert!(cp.success());
    let chart_yaml = bumped.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                "version: 99.0.0"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&chart_yaml, text + "\n").unwrap();
    let bumped = bumped.display().to_string();
    assert_eq!(
        router_template(&bumped, &[]).unwrap(),
        base,
        "a chart version restarted FRR"
    );
    assert_eq!(
        router_template(CHART, &["--set", "agent.logLevel=debug"]).unwrap(),
        base,
        "an agent value restarted FRR"
    );
    assert_ne!(
        router_template(CHART, &["--set", "frr.image.tag=10.4.0"]).unwrap(),
        base,
        "a new FRR image must roll the router pods"
    );
}
