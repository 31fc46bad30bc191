//! The token flow of the OpenStack sync.
//!
//! * On recorded answers of a real Keystone 29.1.0 (`tests/fixtures/openstack/keystone-token-*.json`,
//!   recorded by `hack/neutron/record-keystone-fixtures.py`): parsing, catalog lookup, the admin
//!   check and 401, through [`Keystone`] against a tiny server that replays them.
//! * On real parts: a real Keystone 30.0.0 (`hack/neutron/keystone.sh`, SQLite, fernet, tokens
//!   valid for 20 s) in front of a real neutron-server in Keystone mode (keystonemiddleware), and
//!   the real kube-apiserver. The sync reads a clouds.yaml Secret, issues tokens (password and
//!   application credential), finds Neutron in the catalog by region and interface, renews the
//!   token before it expires, and reports bad credentials without touching any object. No log
//!   line, Event or condition carries a credential or a token.

mod openstack_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bgpvpn_operator::openstack::auth::{Keystone, find_endpoint, parse_clouds_yaml, parse_token_response};
use bgpvpn_operator::openstack::{CredentialsRef, Kind, Stage, SyncConfig, SyncMetrics, Syncer, mapping};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use openstack_support::*;
use serde_json::{Value, json};

fn recorded(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("openstack/keystone-token-{name}.json"))).unwrap(),
    )
    .unwrap()
}

fn parse_recorded(name: &str) -> bgpvpn_operator::openstack::auth::IssuedToken {
    let r = recorded(name);
    parse_token_response(r["x_subject_token"].as_str(), r["body"].to_string().as_bytes()).unwrap()
}

#[test]
fn recorded_keystone_answers_parse() {
    for name in ["password", "appcred"] {
        let t = parse_recorded(name);
        assert!(t.roles.iter().any(|r| r == "admin"), "{name}: {:?}", t.roles);
        assert_eq!(t.lifetime(), Duration::from_secs(3600), "{name}");
        assert_eq!(t.renew_after(), Duration::from_secs(3300), "{name}");
        assert!(t.project_id.is_some(), "{name}");
        for interface in ["public", "internal"] {
            assert_eq!(
                find_endpoint(&t.catalog, "network", interface, Some("RegionOne")).unwrap(),
                "http://neutron.recorded.invalid:9696"
            );
        }
        assert!(find_endpoint(&t.catalog, "network", "admin", Some("RegionOne")).is_err());
        assert!(
            find_endpoint(&t.catalog, "identity", "public", Some("RegionOne"))
                .unwrap()
                .ends_with("/v3")
        );
        assert!(
            find_endpoint(&t.catalog, "network", "public", Some("RegionTwo"))
                .unwrap_err()
                .contains("RegionTwo")
        );
        assert!(format!("{t:?}").contains("<redacted>") && !format!("{t:?}").contains("gAAAA"));
    }
    let member = parse_recorded("member");
    assert!(!member.roles.iter().any(|r| r == "admin"), "{:?}", member.roles);
    let unauthorized = recorded("401");
    assert_eq!(unauthorized["status"], 401);
    assert!(parse_token_response(None, unauthorized["body"].to_string().as_bytes()).is_err());
}

/// Replays one recorded answer to `POST /v3/auth/tokens`.
async fn replay_keystone(answer: Arc<Mutex<Value>>) -> String {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move || {
        let a = answer.lock().unwrap().clone();
        async move {
            let status = StatusCode::from_u16(a["status"].as_u64().unwrap() as u16).unwrap();
            let mut resp = (
                status,
                [("content-type", "application/json")],
                a["body"].to_string(),
            )
                .into_response();
            if let Some(t) = a["x_subject_token"].as_str() {
                resp.headers_mut()
                    .insert("X-Subject-Token", HeaderValue::from_str(t).unwrap());
            }
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn token_flow_on_recorded_answers() {
    let answer = Arc::new(Mutex::new(recorded("password")));
    let url = replay_keystone(answer.clone()).await;
    let clouds = format!(
        "clouds:\n  c:\n    auth: {{auth_url: '{url}', username: admin, password: pw, user_domain_name: Default, project_name: admin, project_domain_name: Default}}\n    region_name: RegionOne\n    interface: internal\n"
    );
    let cloud = parse_clouds_yaml(&clouds, "c").unwrap();
    let metrics = SyncMetrics::default();
    let k = Keystone::new(&cloud, Duration::from_secs(2), None).unwrap();
    let (token, network) = k.token(&metrics).await.unwrap();
    assert_eq!(network, "http://neutron.recorded.invalid:9696");
    assert_eq!(
        token.expose(),
        recorded("password")["x_subject_token"].as_str().unwrap()
    );
    // cached until due
    k.token(&metrics).await.unwrap();
    assert_eq!(metrics.token_issues.get(), 1);
    // forgotten on a 401 from Neutron
    k.invalidate().await;
    k.token(&metrics).await.unwrap();
    assert_eq!(metrics.token_issues.get(), 2);

    *answer.lock().unwrap() = recorded("member");
    let k = Keystone::new(&cloud, Duration::from_secs(2), None).unwrap();
    let e = k.token(&metrics).await.unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Keystone, Kind::Other));
    assert!(e.message.contains("no admin role"), "{e}");

    *answer.lock().unwrap() = recorded("401");
    let e = Keystone::new(&cloud, Duration::from_secs(2), None)
        .unwrap()
        .token(&metrics)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "KeystoneUnauthorized");
    assert!(!e.message.contains("pw"), "{e}");

    // the neutronUrl of the sync wins over the catalog
    *answer.lock().unwrap() = recorded("appcred");
    let k = Keystone::new(
        &cloud,
        Duration::from_secs(2),
        Some("http://override:9696".into()),
    )
    .unwrap();
    assert_eq!(k.token(&metrics).await.unwrap().1, "http://override:9696");

    *answer.lock().unwrap() = json!({"status": 201, "x_subject_token": "t", "body": {"token": {"oops": 1}}});
    let e = Keystone::new(&cloud, Duration::from_secs(2), None)
        .unwrap()
        .token(&metrics)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "KeystoneBadResponse");
}

/// A buffer the test's log lines go to, to check that no secret is ever logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn keystone_call(
    url: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (reqwest::StatusCode, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .header("Accept", "application/json");
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let subject = resp
        .headers()
        .get("X-Subject-Token")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (
        status,
        subject,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

fn password_auth(user: &str, pw: &str) -> Value {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": pw}}},
                    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
}

async fn put_clouds_secret(client: &Client, ns: &str, name: &str, clouds: &str) {
    let s: Secret = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        "stringData": {"clouds.yaml": clouds}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&s))
        .await
        .unwrap();
}

#[tokio::test]
async fn real_keystone_tokens_catalog_renewal_and_bad_credentials() {
    let client = bgpvpn_testkit::client_or_skip!();
    let _serial = SERIAL.lock().await;
    let keystone = Server::start("keystone.sh", &[("KEYSTONE_TOKEN_EXPIRATION", "20".into())]);
    if !or_skip("the Keystone tier", &keystone) {
        return;
    }
    let keystone = keystone.unwrap();
    eprintln!(
        "MEASURE keystone tier (warm venv): setup {:.1} s, start {:.1} s",
        keystone.setup_time.as_secs_f64(),
        keystone.start_time.as_secs_f64()
    );
    let admin_pw = keystone.file("admin-password");
    let neutron = Server::start(
        "neutron-bgpvpn.sh",
        &[
            ("NEUTRON_AUTH", "keystone".into()),
            ("KEYSTONE_URL", keystone.url.clone()),
            ("KEYSTONE_PASSWORD", admin_pw.clone()),
        ],
    );
    if !or_skip("the neutron-server tier", &neutron) {
        return;
    }
    let neutron = neutron.unwrap();

    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_env_filter("debug")
        .finish();
    let _log_guard = tracing::subscriber::set_default(subscriber);

    // The catalog: Neutron's real URL only as the internal endpoint of RegionOne; decoys for
    // the public interface and for another region.
    let (status, admin_token, body) = keystone_call(
        &keystone.url,
        reqwest::Method::POST,
        "/auth/tokens",
        None,
        Some(password_auth("admin", &admin_pw)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let admin_token = admin_token.unwrap();
    let project = body["token"]["project"]["id"].as_str().unwrap().to_string();
    let admin_user = body["token"]["user"]["id"].as_str().unwrap().to_string();
    let t = Some(admin_token.as_str());
    let post = reqwest::Method::POST;
    keystone_call(
        &keystone.url,
        post.clone(),
        "/regions",
        t,
        Some(json!({"region": {"id": "RegionTwo"}})),
    )
    .await;
    let (_, _, svc) = keystone_call(
        &keystone.url,
        post.clone(),
        "/services",
        t,
        Some(json!({"service": {"type": "network", "name": "neutron"}})),
    )
    .await;
    let service = svc["service"]["id"].as_str().unwrap().to_string();
    for (interface, region, url) in [
        ("internal", "RegionOne", neutron.url.as_str()),
        ("public", "RegionOne", "http://127.0.0.1:9"),
        ("internal", "RegionTwo", "http://127.0.0.1:9"),
    ] {
        let (s, _, b) = keystone_call(&keystone.url, post.clone(), "/endpoints", t, Some(json!({"endpoint": {"service_id": service, "interface": interface, "region_id": region, "url": url}}))).await;
        assert_eq!(s, 201, "{b}");
    }

    // OpenStack side, as the admin, through Neutron in Keystone mode.
    install_kuryr_crds(&client).await;
    let os = NeutronApi::with_token(&neutron.url, &project, &admin_token);
    let router = os.router().await;
    let vni = unique_vni();
    let vpn = os
        .bgpvpn(json!({"name": "via-keystone", "vni": vni, "route_targets": [format!("64512:{vni}")]}))
        .await;
    let assoc = os.associate(&vpn, "router", json!({"router_id": router})).await;
    let ns = kuryr_namespace(&client, &os.project, &uuid_like(), &router).await;

    // The clouds.yaml Secret, in a namespace of the operator's.
    let ops = namespace(&client).await;
    let clouds = |auth: &str, extra: &str| {
        format!(
            "clouds:\n  test:\n    auth:\n      auth_url: {}\n{auth}    region_name: RegionOne\n    interface: internal\n    identity_api_version: 3\n{extra}",
            keystone.url.trim_end_matches("/v3")
        )
    };
    let password = |user: &str, pw: &str| {
        format!(
            "      username: {user}\n      password: {pw}\n      user_domain_name: Default\n      project_name: admin\n      project_domain_name: Default\n"
        )
    };
    put_clouds_secret(&client, &ops, "cloud", &clouds(&password("admin", &admin_pw), "")).await;
    let config = SyncConfig {
        credentials: Some(CredentialsRef {
            secret_name: "cloud".into(),
            namespace: Some(ops.clone()),
            key: None,
            cloud: Some("test".into()),
        }),
        poll_interval_seconds: Some(1),
        request_timeout_seconds: Some(5),
        max_backoff_seconds: Some(2),
        ..Default::default()
    };
    let metrics = Arc::new(SyncMetrics::default());
    let mut sync = Syncer::new(client.clone(), config, metrics.clone()).unwrap();
    let r = sync.pass().await.unwrap();
    assert!(r.created >= 2, "{r:?}");
    let name = mapping::vpn_name(&vpn);
    let v = get_vpn(&client, &name)
        .await
        .expect("mirrored through Keystone auth");
    assert_eq!(v.spec.vni, vni);
    assert_eq!(
        v.metadata.annotations.as_ref().unwrap()["bgpvpn.io/openstack-project-id"],
        project
    );
    assert!(
        get_binding(&client, &ns, &mapping::binding_name(&assoc))
            .await
            .is_some()
    );
    assert_eq!(metrics.token_issues.get(), 1);
    sync.pass().await.unwrap();
    assert_eq!(metrics.token_issues.get(), 1, "the token is reused while valid");

    // Renewal: the tokens live 20 s; a new one is issued after 15 s, with no failed pass.
    let t0 = std::time::Instant::now();
    while metrics.token_issues.get() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no renewal within 30 s");
        sync.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "MEASURE token renewed after {:.1} s (lifetime 20 s)",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(metrics.failures_total(), 0);

    // Tokens live 20 s: the test's own admin calls need a fresh one from here on.
    let fresh = keystone_call(
        &keystone.url,
        post.clone(),
        "/auth/tokens",
        None,
        Some(password_auth("admin", &admin_pw)),
    )
    .await
    .1
    .unwrap();
    let t = Some(fresh.as_str());

    // An application credential (the recommended way for a service).
    let (s, _, cred) = keystone_call(
        &keystone.url,
        post.clone(),
        &format!("/users/{admin_user}/application_credentials"),
        t,
        Some(json!({"application_credential": {"name": "bgpvpn-sync", "roles": [{"name": "admin"}]}})),
    )
    .await;
    assert_eq!(s, 201, "{cred}");
    let (cred_id, cred_secret) = (
        cred["application_credential"]["id"].as_str().unwrap().to_string(),
        cred["application_credential"]["secret"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    put_clouds_secret(&client, &ops, "cloud", &clouds(&format!("      application_credential_id: {cred_id}\n      application_credential_secret: {cred_secret}\n"), "    auth_type: v3applicationcredential\n")).await;
    let issued = metrics.token_issues.get();
    sync.pass().await.unwrap();
    assert_eq!(
        metrics.token_issues.get(),
        issued + 1,
        "a changed Secret is read again"
    );

    let before = owned(&client).await;
    let kept = |what: &'static str| {
        let (c, before) = (client.clone(), before.clone());
        async move {
            let now = owned(&c).await;
            assert_eq!(
                now.keys().collect::<Vec<_>>(),
                before.keys().collect::<Vec<_>>(),
                "{what}: an object was deleted or created"
            );
        }
    };
    // Wrong password: 401 from Keystone, nothing touched, reported.
    put_clouds_secret(
        &client,
        &ops,
        "cloud",
        &clouds(&password("admin", "not-the-password"), ""),
    )
    .await;
    let e = sync.pass().await.unwrap_err();
    assert_eq!(e.reason(), "KeystoneUnauthorized", "{e}");
    kept("401").await;
    assert_eq!(
        synced(&get_vpn(&client, &name).await.unwrap()).map(|s| s.1),
        Some("KeystoneUnauthorized".into())
    );
    assert_eq!(metrics.failure_count("keystone_unauthorized"), 1);

    // A user without the admin role: refused before Neutron is asked (its listing would be partial).
    let (_, _, roles) =
        keystone_call(&keystone.url, reqwest::Method::GET, "/roles?name=member", t, None).await;
    let member_role = roles["roles"][0]["id"].as_str().unwrap().to_string();
    let (_, _, user) = keystone_call(
        &keystone.url,
        post.clone(),
        "/users",
        t,
        Some(json!({"user": {"name": "viewer", "domain_id": "default", "password": "viewer-pw-123"}})),
    )
    .await;
    let user_id = user["user"]["id"].as_str().unwrap().to_string();
    keystone_call(
        &keystone.url,
        reqwest::Method::PUT,
        &format!("/projects/{project}/users/{user_id}/roles/{member_role}"),
        t,
        None,
    )
    .await;
    put_clouds_secret(
        &client,
        &ops,
        "cloud",
        &clouds(&password("viewer", "viewer-pw-123"), ""),
    )
    .await;
    let e = sync.pass().await.unwrap_err();
    assert!(e.message.contains("no admin role"), "{e}");
    kept("member").await;

    // No Secret at all.
    Api::<Secret>::namespaced(client.clone(), &ops)
        .delete("cloud", &Default::default())
        .await
        .unwrap();
    let e = sync.pass().await.unwrap_err();
    assert_eq!(e.stage, Stage::Credentials, "{e}");
    kept("no secret").await;

    // Good credentials again: in sync, nothing was recreated.
    put_clouds_secret(&client, &ops, "cloud", &clouds(&password("admin", &admin_pw), "")).await;
    let r = sync.pass().await.unwrap();
    assert!(!r.changed(), "{r:?}");
    assert_eq!(
        synced(&get_vpn(&client, &name).await.unwrap()).map(|s| s.0),
        Some("True".into())
    );

    // Nothing secret in the logs, the Events or the conditions.
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("issued a Keystone token"), "the capture works");
    let events: Vec<Event> = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let notes: String = events
        .iter()
        .filter_map(|e| e.note.clone())
        .collect::<Vec<_>>()
        .join("\n");
    let status = serde_json::to_string(&get_vpn(&client, &name).await.unwrap().status).unwrap();
    for secret in [
        admin_pw.as_str(),
        cred_secret.as_str(),
        "viewer-pw-123",
        "not-the-password",
        admin_token.as_str(),
        "gAAAA",
    ] {
        assert!(
            !text.contains(secret),
            "a secret ({}…) is in the logs",
            &secret[..4]
        );
        assert!(!notes.contains(secret), "a secret is in an Event");
        assert!(!status.contains(secret), "a secret is in a condition");
    }

    // Clean up.
    let fresh = keystone_call(
        &keystone.url,
        post.clone(),
        "/auth/tokens",
        None,
        Some(password_auth("admin", &admin_pw)),
    )
    .await
    .1
    .unwrap();
    NeutronApi::with_token(&neutron.url, &project, &fresh)
        .delete_bgpvpn(&vpn)
        .await;
    sync.pass().await.unwrap();
    assert!(get_vpn(&client, &name).await.is_none());
    neutron.stop();
    keystone.stop();
}
