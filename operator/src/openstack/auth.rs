//! Keystone v3 authentication the way OpenStack users configure it: one entry of a
//! `clouds.yaml`, kept in a Secret that only the operator reads.
//!
//! ```yaml
//! clouds:
//!   openstack:
//!     auth:
//!       auth_url: https://keystone.example:5000/v3
//!       username: bgpvpn-sync          # or user_id
//!       password: ...
//!       user_domain_name: Default      # or user_domain_id (or domain_name / domain_id for both)
//!       project_name: admin            # or project_id
//!       project_domain_name: Default   # or project_domain_id
//!       # or an application credential instead of user + password + project:
//!       # application_credential_id: ...
//!       # application_credential_secret: ...
//!     auth_type: password              # or v3applicationcredential (guessed when absent)
//!     region_name: RegionOne
//!     interface: internal              # public (default), internal, admin
//!     identity_api_version: 3
//!     # verify: false                  # no TLS verification (tests only)
//!     # cacert: /etc/ssl/openstack-ca.pem
//!     # network_endpoint_override: https://neutron.example:9696
//! ```
//!
//! The token is issued by `POST <auth_url>/auth/tokens` (it comes back in `X-Subject-Token`),
//! the Neutron URL is the catalog's `network` endpoint for the region and interface, and the
//! token is issued again when a quarter of its lifetime (at most 5 minutes) is left, or when
//! Neutron answers 401. The sync needs the `admin` role: `vni` and the route targets are
//! admin-only, and a non-admin listing would be partial.
//!
//! Secrets never reach a log line, an error message or an Event: they are held in [`Secret`],
//! whose `Debug` prints `<redacted>`, and errors about the clouds file carry only positions.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Kind, Stage, SyncError, SyncMetrics};

/// A credential or token: never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, serde_yaml::Value>,
}

/// One cloud of a `clouds.yaml`. Keys not listed here are ignored, as openstacksdk does with keys
/// it does not know.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CloudConfig {
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub auth_type: Option<String>,
    #[serde(default)]
    pub region_name: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
    /// The older spelling of `interface`.
    #[serde(default)]
    pub endpoint_type: Option<String>,
    #[serde(default)]
    pub identity_api_version: Option<serde_yaml::Value>,
    #[serde(default)]
    pub verify: Option<bool>,
    #[serde(default)]
    pub cacert: Option<String>,
    #[serde(default)]
    pub network_endpoint_override: Option<String>,
}

/// The `auth:` part of a cloud.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct AuthConfig {
    #[serde(default)]
    pub auth_url: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub project_name: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub user_domain_name: Option<String>,
    #[serde(default)]
    pub user_domain_id: Option<String>,
    #[serde(default)]
    pub project_domain_name: Option<String>,
    #[serde(default)]
    pub project_domain_id: Option<String>,
    #[serde(default)]
    pub domain_name: Option<String>,
    #[serde(default)]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub application_credential_id: Option<String>,
    #[serde(default)]
    pub application_credential_name: Option<String>,
    #[serde(default)]
    pub application_credential_secret: Option<Secret>,
}

/// Reads cloud `cloud` of a `clouds.yaml`. Errors say where, never what (the file holds secrets).
pub fn parse_clouds_yaml(text: &str, cloud: &str) -> Result<CloudConfig, String> {
    let where_ = |e: &serde_yaml::Error| match e.location() {
        Some(l) => format!(" (line {}, column {})", l.line(), l.column()),
        None => String::new(),
    };
    let file: CloudsFile =
        serde_yaml::from_str(text).map_err(|e| format!("clouds.yaml is not a clouds file{}", where_(&e)))?;
    let names: Vec<&str> = file.clouds.keys().map(String::as_str).collect();
    let entry = file.clouds.get(cloud).ok_or_else(|| {
        format!(
            "clouds.yaml has no cloud {cloud:?} (it has: {})",
            names.join(", ")
        )
    })?;
    serde_yaml::from_value(entry.clone()).map_err(|e| {
        // serde_yaml names the field but may quote a value: keep only the path part.
        let msg = e.to_string();
        let path = msg.split(':').next().unwrap_or_default().trim();
        format!(
            "clouds.yaml cloud {cloud:?}: an entry has the wrong type{}",
            if path.is_empty() {
                String::new()
            } else {
                format!(" near {path:?}")
            }
        )
    })
}

fn first<'a>(options: &[&'a Option<String>]) -> Option<&'a str> {
    options
        .iter()
        .find_map(|o| o.as_deref())
        .filter(|s| !s.is_empty())
}

impl CloudConfig {
    /// `<auth_url>/auth/tokens`, with `/v3` added when the URL has no version.
    pub fn token_url(&self) -> Result<reqwest::Url, String> {
        if let Some(v) = &self.identity_api_version {
            let three = match v {
                serde_yaml::Value::Number(n) => n.as_f64() == Some(3.0),
                serde_yaml::Value::String(s) => s == "3" || s == "3.0",
                _ => false,
            };
            if !three {
                return Err("identity_api_version must be 3 (Keystone v2 is gone)".into());
            }
        }
        let base = self
            .auth
            .auth_url
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or("auth.auth_url is missing")?;
        let base = base.trim_end_matches('/');
        let versioned = if base.ends_with("/v3") {
            base.to_string()
        } else if base.ends_with("/v2.0") {
            return Err("auth.auth_url points at Keystone v2.0; use the v3 URL".into());
        } else {
            format!("{base}/v3")
        };
        let url = reqwest::Url::parse(&format!("{versioned}/auth/tokens"))
            .map_err(|e| format!("auth.auth_url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("auth.auth_url must be http or https".into());
        }
        Ok(url)
    }

    /// `public`, `internal` or `admin` (the `...URL` spellings are accepted).
    pub fn interface(&self) -> Result<&'static str, String> {
        let raw = self
            .interface
            .as_deref()
            .or(self.endpoint_type.as_deref())
            .unwrap_or("public");
        match raw.trim_end_matches("URL") {
            "public" => Ok("public"),
            "internal" => Ok("internal"),
            "admin" => Ok("admin"),
            other => Err(format!("interface {other:?} is not public, internal or admin")),
        }
    }

    /// The body of `POST /v3/auth/tokens`. It holds the credential: never log it.
    pub fn token_request(&self) -> Result<Secret, String> {
        let a = &self.auth;
        let kind = match self.auth_type.as_deref() {
            Some("password" | "v3password") => "password",
            Some("v3applicationcredential" | "applicationcredential" | "application_credential") => "appcred",
            Some(other) => {
                return Err(format!(
                    "auth_type {other:?} is not supported (password, v3applicationcredential)"
                ));
            }
            None if a.application_credential_secret.is_some() => "appcred",
            None => "password",
        };
        let user = || -> Result<Value, String> {
            if let Some(id) = first(&[&a.user_id]) {
                return Ok(json!({"id": id}));
            }
            let name = first(&[&a.username]).ok_or("auth.username or auth.user_id is missing")?;
            let domain = if let Some(id) = first(&[&a.user_domain_id, &a.domain_id]) {
                json!({"id": id})
            } else if let Some(n) = first(&[&a.user_domain_name, &a.domain_name]) {
                json!({"name": n})
            } else {
                return Err(
                    "auth.user_domain_name or auth.user_domain_id is missing (needed with auth.username)"
                        .into(),
                );
            };
            Ok(json!({"name": name, "domain": domain}))
        };
        let body = if kind == "password" {
            let password = a.password.as_ref().ok_or("auth.password is missing")?;
            let mut user = user()?;
            user["password"] = Value::String(password.expose().to_string());
            let scope = if let Some(id) = first(&[&a.project_id]) {
                json!({"project": {"id": id}})
            } else if let Some(name) = first(&[&a.project_name]) {
                let domain = if let Some(id) = first(&[&a.project_domain_id, &a.domain_id]) {
                    json!({"id": id})
                } else if let Some(n) = first(&[&a.project_domain_name, &a.domain_name]) {
                    json!({"name": n})
                } else {
                    return Err("auth.project_domain_name or auth.project_domain_id is missing (needed with auth.project_name)".into());
                };
                json!({"project": {"name": name, "domain": domain}})
            } else {
                return Err("auth.project_name or auth.project_id is missing: the sync needs a project-scoped admin token".into());
            };
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}, "scope": scope}})
        } else {
            let secret = a
                .application_credential_secret
                .as_ref()
                .ok_or("auth.application_credential_secret is missing")?;
            let cred = if let Some(id) = first(&[&a.application_credential_id]) {
                json!({"id": id, "secret": secret.expose()})
            } else if let Some(name) = first(&[&a.application_credential_name]) {
                json!({"name": name, "secret": secret.expose(), "user": user()?})
            } else {
                return Err(
                    "auth.application_credential_id or auth.application_credential_name is missing".into(),
                );
            };
            json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": cred}}})
        };
        Ok(Secret(body.to_string()))
    }

    /// An HTTP client with this cloud's TLS settings and the given timeout.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut b = http_builder(timeout);
        if self.verify == Some(false) {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &self.cacert {
            let pem = std::fs::read(path).map_err(|e| format!("cacert {path}: {e}"))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("cacert {path}: {e}"))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        b.build().map_err(|e| format!("HTTP client: {e}"))
    }
}

/// The common settings of every HTTP client of the sync.
pub fn http_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!(
            "bgpvpn-operator-openstack-sync/",
            env!("CARGO_PKG_VERSION")
        ))
}

/// A service of the catalog.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CatalogService {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

/// What a token issue returned.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: Secret,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub roles: Vec<String>,
    pub project_id: Option<String>,
    pub catalog: Vec<CatalogService>,
}

impl IssuedToken {
    /// How long the token is valid, from Keystone's own clock (so clock skew does not matter).
    pub fn lifetime(&self) -> Duration {
        let secs = self
            .expires_at
            .as_second()
            .saturating_sub(self.issued_at.as_second());
        Duration::from_secs(secs.max(0) as u64)
    }

    /// When to issue a new one, counted from when this one was received.
    pub fn renew_after(&self) -> Duration {
        let lifetime = self.lifetime();
        lifetime.saturating_sub((lifetime / 4).min(Duration::from_secs(300)))
    }
}

/// Parses the answer to `POST /v3/auth/tokens` (the `X-Subject-Token` header and the body).
pub fn parse_token_response(subject_token: Option<&str>, body: &[u8]) -> Result<IssuedToken, String> {
    #[derive(Deserialize)]
    struct Body {
        token: TokenBody,
    }
    #[derive(Deserialize)]
    struct TokenBody {
        expires_at: String,
        issued_at: String,
        #[serde(default)]
        roles: Vec<Role>,
        #[serde(default)]
        project: Option<Project>,
        #[serde(default)]
        catalog: Option<Vec<CatalogService>>,
    }
    #[derive(Deserialize)]
    struct Role {
        name: String,
    }
    #[derive(Deserialize)]
    struct Project {
        id: String,
    }
    let token = subject_token
        .filter(|t| !t.is_empty())
        .ok_or("no X-Subject-Token header in the answer")?;
    let b: Body =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not a Keystone v3 token: {e}"))?;
    let time = |field: &str, s: &str| {
        s.parse::<Timestamp>()
            .map_err(|e| format!("token.{field} {s:?}: {e}"))
    };
    let issued_at = time("issued_at", &b.token.issued_at)?;
    let expires_at = time("expires_at", &b.token.expires_at)?;
    if expires_at <= issued_at {
        return Err(format!(
            "token expires ({expires_at}) before it was issued ({issued_at})"
        ));
    }
    Ok(IssuedToken {
        token: Secret(token.to_string()),
        issued_at,
        expires_at,
        roles: b.token.roles.into_iter().map(|r| r.name).collect(),
        project_id: b.token.project.map(|p| p.id),
        catalog: b.token.catalog.ok_or("the token has no catalog")?,
    })
}

/// The URL of a service in the catalog, for an interface and (when given) a region.
pub fn find_endpoint(
    catalog: &[CatalogService],
    service_type: &str,
    interface: &str,
    region: Option<&str>,
) -> Result<String, String> {
    let services: Vec<&CatalogService> = catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .collect();
    if services.is_empty() {
        let types: Vec<&str> = catalog.iter().map(|s| s.service_type.as_str()).collect();
        return Err(format!(
            "the catalog has no {service_type:?} service (it has: {})",
            types.join(", ")
        ));
    }
    let mut urls: Vec<&str> = services
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.interface.trim_end_matches("URL") == interface)
        .filter(|e| {
            region.is_none_or(|r| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r))
        })
        .map(|e| e.url.as_str())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    match urls.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(format!(
            "the catalog has no {interface} {service_type:?} endpoint{}",
            region.map(|r| format!(" in region {r:?}")).unwrap_or_default()
        )),
        many => Err(format!(
            "the catalog has {} {interface} {service_type:?} endpoints; set region_name to pick one",
            many.len()
        )),
    }
}

struct Cached {
    token: Secret,
    network_url: String,
    renew_at: Instant,
}

/// A Keystone session for one cloud: issues, caches and renews the token.
pub struct Keystone {
    http: reqwest::Client,
    token_url: reqwest::Url,
    request: Secret,
    interface: &'static str,
    region: Option<String>,
    network_override: Option<String>,
    cached: Mutex<Option<Cached>>,
}

impl fmt::Debug for Keystone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystone")
            .field("token_url", &self.token_url.as_str())
            .field("interface", &self.interface)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn config_err(m: String) -> SyncError {
    SyncError::new(Stage::Credentials, Kind::Other, m)
}

impl Keystone {
    /// A session for `cloud`; `network_override` (the sync's `neutronUrl`) wins over the
    /// cloud's `network_endpoint_override`, which wins over the catalog.
    pub fn new(
        cloud: &CloudConfig,
        timeout: Duration,
        network_override: Option<String>,
    ) -> Result<Self, SyncError> {
        Ok(Keystone {
            http: cloud.http_client(timeout).map_err(config_err)?,
            token_url: cloud.token_url().map_err(config_err)?,
            request: cloud.token_request().map_err(config_err)?,
            interface: cloud.interface().map_err(config_err)?,
            region: cloud.region_name.clone().filter(|r| !r.is_empty()),
            network_override: network_override.or_else(|| cloud.network_endpoint_override.clone()),
            cached: Mutex::new(None),
        })
    }

    /// The HTTP client with the cloud's TLS settings (also used for Neutron).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A valid token and the Neutron URL, issuing a token when there is none or it is due.
    pub async fn token(&self, metrics: &SyncMetrics) -> Result<(Secret, String), SyncError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok((c.token.clone(), c.network_url.clone()));
        }
        let received = Instant::now();
        let issued = self.issue().await?;
        metrics.token_issues.inc();
        if !issued.roles.iter().any(|r| r == "admin") {
            return Err(SyncError::new(
                Stage::Keystone,
                Kind::Other,
                format!(
                    "the token has no admin role (roles: {}); the sync needs admin: vni and route targets are admin-only and a non-admin listing is partial",
                    issued.roles.join(", ")
                ),
            ));
        }
        let network_url = match &self.network_override {
            Some(url) => url.clone(),
            None => find_endpoint(&issued.catalog, "network", self.interface, self.region.as_deref())
                .map_err(|m| SyncError::new(Stage::Keystone, Kind::BadResponse, m))?,
        };
        tracing::info!(lifetime_s = issued.lifetime().as_secs(), %network_url, "issued a Keystone token");
        let c = Cached {
            token: issued.token.clone(),
            network_url: network_url.clone(),
            renew_at: received + issued.renew_after(),
        };
        *cached = Some(c);
        Ok((issued.token, network_url))
    }

    /// Forgets the token (Neutron refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn issue(&self) -> Result<IssuedToken, SyncError> {
        let err = |kind, m: String| SyncError::new(Stage::Keystone, kind, m);
        let resp = self
            .http
            .post(self.token_url.clone())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(self.request.expose().to_string())
            .send()
            .await
            .map_err(|e| {
                err(
                    Kind::Unreachable,
                    format!("Keystone {}: {}", self.token_url, without_url(&e)),
                )
            })?;
        let status = resp.status();
        let subject = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.map_err(|e| {
            err(
                Kind::Unreachable,
                format!("Keystone {}: {}", self.token_url, without_url(&e)),
            )
        })?;
        if status.as_u16() == 401 {
            return Err(err(
                Kind::Unauthorized,
                format!("Keystone {} refused the credentials (401)", self.token_url),
            ));
        }
        if !status.is_success() {
            return Err(err(
                Kind::Status(status.as_u16()),
                format!(
                    "Keystone {} answered {status}: {}",
                    self.token_url,
                    excerpt(&body)
                ),
            ));
        }
        parse_token_response(subject.as_deref(), &body)
            .map_err(|m| err(Kind::BadResponse, format!("Keystone {}: {m}", self.token_url)))
    }
}

/// A reqwest error without the URL (which the caller already names).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() || e.is_body() {
        "could not read the answer"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

/// The start of an error answer, on one line.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUDS: &str = r#"
clouds:
  pw:
    auth:
      auth_url: http://keystone:5000
      username: sync
      password: hunter2-very-secret
      user_domain_name: Default
      project_name: admin
      project_domain_id: default
    region_name: RegionOne
    interface: internal
    identity_api_version: 3
  appcred:
    auth:
      auth_url: https://keystone/identity/v3/
      application_credential_id: abc
      application_credential_secret: s3cr3t-app
    auth_type: v3applicationcredential
  weird:
    auth: {auth_url: "http://k/v2.0", username: x, password: y}
"#;

    #[test]
    fn password_cloud() {
        let c = parse_clouds_yaml(CLOUDS, "pw").unwrap();
        assert_eq!(
            c.token_url().unwrap().as_str(),
            "http://keystone:5000/v3/auth/tokens"
        );
        assert_eq!(c.interface().unwrap(), "internal");
        let body: Value = serde_json::from_str(c.token_request().unwrap().expose()).unwrap();
        assert_eq!(body["auth"]["identity"]["methods"], json!(["password"]));
        assert_eq!(
            body["auth"]["identity"]["password"]["user"],
            json!({"name": "sync", "domain": {"name": "Default"}, "password": "hunter2-very-secret"})
        );
        assert_eq!(
            body["auth"]["scope"],
            json!({"project": {"name": "admin", "domain": {"id": "default"}}})
        );
        // nothing printable shows the password
        let shown = format!("{c:?} {:?}", c.token_request().unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn application_credential_cloud() {
        let c = parse_clouds_yaml(CLOUDS, "appcred").unwrap();
        assert_eq!(
            c.token_url().unwrap().as_str(),
            "https://keystone/identity/v3/auth/tokens"
        );
        assert_eq!(c.interface().unwrap(), "public");
        let body: Value = serde_json::from_str(c.token_request().unwrap().expose()).unwrap();
        assert_eq!(
            body["auth"]["identity"]["application_credential"],
            json!({"id": "abc", "secret": "s3cr3t-app"})
        );
        assert!(body["auth"].get("scope").is_none());
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn mistakes_are_explained_without_secrets() {
        assert!(parse_clouds_yaml(CLOUDS, "nope").unwrap_err().contains("pw"));
        assert!(
            parse_clouds_yaml(CLOUDS, "weird")
                .unwrap()
                .token_url()
                .unwrap_err()
                .contains("v2.0")
        );
        let err = parse_clouds_yaml(
            "clouds:\n  x:\n    auth:\n      password: [not, a, string-secret-zzz]\n",
            "x",
        )
        .unwrap_err();
        assert!(!err.contains("zzz"), "{err}");
        let err = parse_clouds_yaml("clouds: {x: {auth: {password: \"p-zzz\"}\n", "x").unwrap_err();
        assert!(!err.contains("zzz") && err.contains("line"), "{err}");
        let mut c = parse_clouds_yaml(CLOUDS, "pw").unwrap();
        c.auth.project_name = None;
        assert!(c.token_request().unwrap_err().contains("project"));
        c.auth_type = Some("token".into());
        assert!(c.token_request().unwrap_err().contains("not supported"));
        c.interface = Some("private".into());
        assert!(c.interface().is_err());
    }

    #[test]
    fn endpoint_lookup() {
        let catalog: Vec<CatalogService> = serde_json::from_value(json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region": "R1", "region_id": "R1", "url": "http://k/v3"}]},
            {"type": "network", "name": "neutron", "endpoints": [
                {"interface": "public", "region_id": "R1", "url": "https://n1.public:9696"},
                {"interface": "internal", "region_id": "R1", "url": "http://n1.internal:9696"},
                {"interface": "public", "region_id": "R2", "url": "https://n2.public:9696"}]}
        ]))
        .unwrap();
        assert_eq!(
            find_endpoint(&catalog, "network", "internal", None).unwrap(),
            "http://n1.internal:9696"
        );
        assert_eq!(
            find_endpoint(&catalog, "network", "public", Some("R2")).unwrap(),
            "https://n2.public:9696"
        );
        assert!(
            find_endpoint(&catalog, "network", "public", None)
                .unwrap_err()
                .contains("region_name")
        );
        assert!(
            find_endpoint(&catalog, "network", "admin", Some("R1"))
                .unwrap_err()
                .contains("no admin")
        );
        assert!(
            find_endpoint(&catalog, "compute", "public", None)
                .unwrap_err()
                .contains("identity, network")
        );
    }

    #[test]
    fn renewal_time() {
        let t = parse_token_response(
            Some("tok"),
            br#"{"token": {"issued_at": "2026-01-01T00:00:00.000000Z", "expires_at": "2026-01-01T01:00:00.000000Z", "catalog": []}}"#,
        )
        .unwrap();
        assert_eq!(t.lifetime(), Duration::from_secs(3600));
        assert_eq!(t.renew_after(), Duration::from_secs(3300));
        let short = parse_token_response(
            Some("tok"),
            br#"{"token": {"issued_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:01:00Z", "catalog": []}}"#,
        )
        .unwrap();
        assert_eq!(short.renew_after(), Duration::from_secs(45));
        assert!(
            parse_token_response(None, b"{}")
                .unwrap_err()
                .contains("X-Subject-Token")
        );
        assert!(parse_token_response(Some("t"), b"<html>").is_err());
        assert!(format!("{:?}", short.token).contains("redacted"));
    }
}
