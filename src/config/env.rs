//! Environment overrides: `ADO_AUTH_PROXY_<SECTION>__<KEY>=value`.
//!
//! `__` separates nesting levels and names are case-insensitive, so
//! `ADO_AUTH_PROXY_UPSTREAM__HOSTS__VSRM` sets `upstream.hosts.vsrm`. Values
//! are parsed like TOML values: `30s` is a string, `["a","b"]` a list.
//! The variables come in as an iterator so tests never touch the process
//! environment.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "ADO_AUTH_PROXY_";

/// A figment provider built from `(name, value)` pairs.
pub struct EnvProvider {
    vars: Vec<(Vec<String>, String)>,
}

impl EnvProvider {
    /// Keeps the variables of the form `ADO_AUTH_PROXY_<SECTION>__<KEY>`
    /// (every key is in a section); others that share the prefix, such
    /// as the ones the kubelet injects for a Service named
    /// `ado-auth-proxy`, are no configuration.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = vars
            .into_iter()
            .filter_map(|(k, v)| Some((config_path(&k)?, v)))
            .collect();
        Self { vars }
    }
}

/// The config path a variable sets, when it is a configuration variable.
fn config_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if !rest.contains("__") {
        return None;
    }
    let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    (!path.iter().any(String::is_empty)).then_some(path)
}

/// Variables with the prefix that are ignored and do not look like the
/// kubelet's service links (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_80_TCP`,
/// …): likely a configuration variable with one `_` where `__` belongs.
pub fn ignored<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| n.starts_with(ENV_PREFIX) && config_path(n).is_none())
        .filter(|n| *n != "ADO_AUTH_PROXY_CONFIG" && !is_service_link(&n[ENV_PREFIX.len()..]))
        .map(str::to_string)
        .collect()
}

/// What the kubelet sets for a Service (Docker links' names): `SERVICE_HOST`,
/// `SERVICE_PORT`, `SERVICE_PORT_<NAME>`, `PORT`, `PORT_<n>_<PROTO>` and
/// its `_PROTO`, `_PORT`, `_ADDR`.
fn is_service_link(rest: &str) -> bool {
    if rest == "SERVICE_HOST" || rest == "SERVICE_PORT" || rest == "PORT" {
        return true;
    }
    if rest.starts_with("SERVICE_PORT_") {
        return true;
    }
    let Some(port) = rest.strip_prefix("PORT_") else {
        return false;
    };
    let mut parts = port.split('_');
    let number = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let proto = parts
        .next()
        .is_some_and(|p| ["TCP", "UDP", "SCTP"].contains(&p));
    let tail = parts.next();
    number
        && proto
        && parts.next().is_none()
        && tail.is_none_or(|t| ["PROTO", "PORT", "ADDR"].contains(&t))
}

/// The variable name that sets the dotted `key`.
pub fn variable_for(keys: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase())
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert(first.clone(), value);
        return;
    }
    let entry = dict
        .entry(first.clone())
        .or_insert_with(|| Value::from(Dict::new()));
    if entry.as_dict().is_none() {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert(inner, rest, value);
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| variable_for(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (path, raw) in &self.vars {
            // A secret is text whatever it looks like (a PAT of digits is
            // no number); other values are parsed like TOML, and what is
            // not TOML-like stays a string.
            let value: Value = if super::secret::is_secret_key(&path.join(".")) {
                Value::from(raw.clone())
            } else {
                raw.parse().unwrap_or_else(|_| Value::from(raw.clone()))
            };
            insert(&mut dict, path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Azure's own variables, read as defaults of `[auth]` keys in mode
/// `service`: the Workload Identity webhook's `AZURE_*` and App Service's
/// `IDENTITY_*`. The config file and `ADO_AUTH_PROXY_*` override them.
pub struct AzureEnv {
    vars: Vec<(&'static str, &'static str, String)>,
}

/// (variable, `[auth]` key, source it applies to)
const AZURE_VARS: &[(&str, &str, &str)] = &[
    ("AZURE_CLIENT_ID", "client_id", "workload-identity"),
    ("AZURE_TENANT_ID", "tenant", "workload-identity"),
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        "federated_token_file",
        "workload-identity",
    ),
    (
        "AZURE_AUTHORITY_HOST",
        "authority_host",
        "workload-identity",
    ),
    (
        "IDENTITY_ENDPOINT",
        "managed_identity_endpoint",
        "managed-identity",
    ),
    (
        "IDENTITY_HEADER",
        "managed_identity_header",
        "managed-identity",
    ),
];

impl AzureEnv {
    /// The variables that apply to `source`.
    pub fn new(vars: &[(String, String)], source: &str) -> Self {
        let vars = AZURE_VARS
            .iter()
            .filter(|(_, _, s)| *s == source)
            .filter_map(|(name, key, _)| {
                let (_, v) = vars.iter().find(|(k, _)| k == name)?;
                (!v.trim().is_empty()).then(|| (*name, *key, v.trim().to_string()))
            })
            .collect();
        Self { vars }
    }
}

impl Provider for AzureEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_: &Profile, keys: &[&str]| {
            let key = keys.last().copied().unwrap_or_default();
            AZURE_VARS
                .iter()
                .find(|(_, k, _)| *k == key)
                .map(|(name, _, _)| name.to_string())
                .unwrap_or_else(|| variable_for(keys))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut auth = Dict::new();
        for (_, key, value) in &self.vars {
            auth.insert(key.to_string(), Value::from(value.clone()));
        }
        let mut dict = Dict::new();
        dict.insert("auth".into(), Value::from(auth));
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_links_are_no_configuration_and_typos_are_named() {
        let links = [
            "ADO_AUTH_PROXY_SERVICE_HOST",
            "ADO_AUTH_PROXY_SERVICE_PORT",
            "ADO_AUTH_PROXY_SERVICE_PORT_HTTP",
            "ADO_AUTH_PROXY_PORT",
            "ADO_AUTH_PROXY_PORT_80_TCP",
            "ADO_AUTH_PROXY_PORT_80_TCP_PROTO",
            "ADO_AUTH_PROXY_PORT_80_TCP_PORT",
            "ADO_AUTH_PROXY_PORT_9090_TCP_ADDR",
        ];
        for name in links {
            assert_eq!(config_path(name), None, "{name}");
        }
        assert!(ignored(links).is_empty());
        assert_eq!(
            config_path("ADO_AUTH_PROXY_LISTEN__ADRESS"),
            Some(vec!["listen".to_string(), "adress".to_string()]),
            "a mistyped key stays configuration (and an error)"
        );
        assert_eq!(config_path("ADO_AUTH_PROXY___X"), None);
        assert_eq!(
            ignored([
                "ADO_AUTH_PROXY_AUTH_MODE",
                "ADO_AUTH_PROXY_PORT_80_TCP_EXTRA",
                "ADO_AUTH_PROXY_CONFIG",
                "OTHER",
                "ADO_AUTH_PROXY_AUTH__MODE",
            ]),
            [
                "ADO_AUTH_PROXY_AUTH_MODE",
                "ADO_AUTH_PROXY_PORT_80_TCP_EXTRA"
            ]
        );
        let p = EnvProvider::new([
            (
                "ADO_AUTH_PROXY_PORT".to_string(),
                "tcp://10.0.0.1:80".to_string(),
            ),
            ("ADO_AUTH_PROXY_AUTH__MODE".to_string(), "pat".to_string()),
        ]);
        assert_eq!(p.vars.len(), 1);
    }
}
