//! Loading: the TOML file, then environment overrides, then typed
//! extraction section by section, then [`super::validate`]. Every problem
//! found on the way is collected, so one run lists them all.

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, error::Kind};
use serde::de::DeserializeOwned;

use super::egress::ProxyEnvironment;
use super::env::{AzureEnv, EnvProvider, variable_for};
use super::problem::{Problem, Problems};
use super::{Config, validate};

// === loading ===

/// The figment for a config file (if any) overridden by `env`.
pub fn figment_for(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Figment {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let file_and_env = |base: Figment| {
        let mut figment = base;
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(EnvProvider::new(env.iter().cloned()))
    };
    let figment = file_and_env(Figment::new());
    // Azure's own variables are defaults under the file, for the service
    // sources they belong to.
    let service = figment.extract_inner::<String>("auth.mode").ok().as_deref() == Some("service");
    match figment.extract_inner::<String>("auth.source") {
        Ok(source) if service => file_and_env(Figment::new().merge(AzureEnv::new(&env, &source))),
        _ => figment,
    }
}

/// Loads `path` with `env` overrides; the whole pipeline used by `main`.
pub fn load_file(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Problems> {
    load_file_checking(Some(path), env, true)
}

/// [`load_file`], looking at the files keys name only when `files`;
/// without a `path`, the environment alone. The proxy variables of `env`
/// (`HTTPS_PROXY`, ...) are read here too, for the egress plan.
pub fn load_file_checking(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    files: bool,
) -> Result<Config, Problems> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    if let Some(path) = path {
        readable(path)?;
    }
    let proxies = ProxyEnvironment::capture(&env);
    load_inner(&figment_for(path, env), proxies, files)
}

/// Whether the config file at `path` can be read; opened, not only
/// looked at: a file that exists but cannot be read (its mode, a
/// directory) must be named too.
fn readable(path: &Path) -> Result<(), Problems> {
    let readable = std::fs::File::open(path).and_then(|f| {
        if f.metadata()?.is_dir() {
            return Err(std::io::Error::other("it is a directory"));
        }
        Ok(())
    });
    if let Err(e) = readable {
        let fix = match e.kind() {
            std::io::ErrorKind::NotFound => "pass an existing file with --config",
            std::io::ErrorKind::PermissionDenied => {
                "make it readable by the proxy's user (a mounted ConfigMap: defaultMode 0444)"
            }
            _ => "pass a readable file with --config",
        };
        return Err(Problems(vec![Problem::new(
            "",
            format!("cannot read the config file {}: {e}; {fix}", path.display()),
        )]));
    }
    Ok(())
}

/// Extracts and validates a [`Config`] from any figment.
pub fn load(figment: &Figment) -> Result<Config, Problems> {
    load_checking(figment, true)
}

/// [`load`]; with `files` false, the files keys name are not looked at
/// (`check-config --no-files`: a Kubernetes config checked where the
/// mounted secrets are not).
pub fn load_checking(figment: &Figment, files: bool) -> Result<Config, Problems> {
    load_inner(figment, ProxyEnvironment::default(), files)
}

/// [`load_checking`] with the environment's proxy variables.
fn load_inner(
    figment: &Figment,
    proxies: ProxyEnvironment,
    files: bool,
) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let root: Dict = match figment.extract() {
        Ok(root) => root,
        Err(e) => {
            // Only a syntax error gets here: report it alone.
            problems.extend(from_figment_error(figment, "", e));
            return Err(Problems(problems));
        }
    };
    problems.extend(unknown_keys(figment, &root));

    let mut config = Config::default();
    section(figment, "listen", &mut config.listen, &mut problems);
    section(figment, "admin", &mut config.admin, &mut problems);
    section(figment, "upstream", &mut config.upstream, &mut problems);
    config.upstream.proxy_environment = proxies;
    // [upstream.hosts] adds to and overrides the default hosts.
    for (name, url) in Config::default().upstream.hosts {
        config.upstream.hosts.entry(name).or_insert(url);
    }
    section(figment, "log", &mut config.log, &mut problems);
    section(figment, "auth", &mut config.auth, &mut problems);
    section(figment, "session", &mut config.session, &mut problems);
    section(figment, "access", &mut config.access, &mut problems);

    for (key, file_key, present) in [
        ("pat", "pat_file", config.auth.pat.is_some()),
        (
            "client_secret",
            "client_secret_file",
            config.auth.client_secret.is_some(),
        ),
    ] {
        if present && !from_env(figment, &format!("auth.{key}")) {
            problems.push(Problem::new(
                format!("auth.{key}"),
                format!(
                    "a secret may not be written in the config file; put it in a file named by \
                     auth.{file_key}, or in the environment variable {}",
                    variable_for(&["auth", key])
                ),
            ));
        }
    }
    if config.auth.managed_identity_header.is_some()
        && !from_env(figment, "auth.managed_identity_header")
    {
        problems.push(Problem::new(
            "auth.managed_identity_header",
            "a secret may not be written in the config file; App Service provides it as \
             IDENTITY_HEADER, which the proxy reads by itself",
        ));
    }
    problems.extend(validate::validate(&config));
    if !files {
        problems.retain(|p| !p.file);
    }

    if problems.is_empty() {
        match super::egress::egress_plan(&config.upstream, files) {
            Ok(egress) => config.upstream.egress = egress,
            Err(p) => return Err(Problems(p)),
        }
        Ok(config)
    } else {
        Err(Problems(problems))
    }
}

fn from_env(figment: &Figment, key: &str) -> bool {
    figment
        .find_metadata(key)
        .is_some_and(|m| m.name == "environment variable")
}

/// Extracts one section, leaving the default in place on error.
fn section<T: DeserializeOwned>(
    figment: &Figment,
    name: &str,
    slot: &mut T,
    problems: &mut Vec<Problem>,
) {
    if !figment.contains(name) {
        return;
    }
    // serde stops at a section's first bad value: put the default in its
    // place and read again, so every bad value of the section is reported
    // at once (messages and origins come from the figment as written).
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut patched = figment.clone();
    let mut failed = false;
    for _ in 0..MAX_PROBLEMS_PER_SECTION {
        match patched.extract_inner::<T>(name) {
            Ok(value) => {
                if !failed {
                    *slot = value;
                }
                return;
            }
            Err(e) => {
                failed = true;
                let found = from_figment_error(figment, name, e);
                let mut replaced = false;
                for p in &found {
                    let pointer = format!("/{}", p.key.replace('.', "/"));
                    if let Some(d) = defaults.pointer(&pointer).filter(|d| !d.is_null()) {
                        patched = patched
                            .merge(figment::providers::Serialized::default(&p.key, d.clone()));
                        replaced = true;
                    }
                }
                problems.extend(found);
                if !replaced {
                    return;
                }
            }
        }
    }
}

/// Bad values reported per section at most (each costs a re-read).
const MAX_PROBLEMS_PER_SECTION: usize = 32;

/// Keys the user wrote that no section knows. The set of known keys is the
/// default config serialized, so it can never drift from the structs.
fn unknown_keys(figment: &Figment, root: &Dict) -> Vec<Problem> {
    let schema = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut out = Vec::new();
    walk_unknown(figment, root, &schema, &mut Vec::new(), &mut out);
    out
}

/// Tables whose keys are the user's own names.
const FREE_FORM_TABLES: &[&str] = &["upstream.hosts"];

fn walk_unknown(
    figment: &Figment,
    dict: &Dict,
    schema: &serde_json::Value,
    path: &mut Vec<String>,
    out: &mut Vec<Problem>,
) {
    let Some(known) = schema.as_object() else {
        return;
    };
    if FREE_FORM_TABLES.contains(&path.join(".").as_str()) {
        return;
    }
    for (key, value) in dict {
        path.push(key.clone());
        let dotted = path.join(".");
        match known.get(key) {
            None => {
                let mut msg = "unknown key".to_string();
                if let Some(near) = closest(key, known.keys()) {
                    msg.push_str(&format!("; did you mean `{near}`?"));
                }
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                msg.push_str(&format!(" Known keys here: {}", names.join(", ")));
                out.push(Problem::new(dotted.clone(), msg).with_origin(origin(figment, &dotted)));
            }
            Some(sub) => {
                if let Value::Dict(_, inner) = value {
                    walk_unknown(figment, inner, sub, path, out);
                }
            }
        }
        path.pop();
    }
}

fn origin(figment: &Figment, key: &str) -> Option<String> {
    let meta = figment.find_metadata(key)?;
    if meta.name == "environment variable" {
        let keys: Vec<&str> = key.split('.').collect();
        return Some(format!("environment variable {}", variable_for(&keys)));
    }
    match &meta.source {
        Some(figment::Source::File(p)) => Some(p.display().to_string()),
        _ => Some(meta.name.to_string()),
    }
}

fn from_figment_error(figment: &Figment, section: &str, err: figment::Error) -> Vec<Problem> {
    err.into_iter()
        .map(|e| {
            // figment appends the section to the field path; put it first.
            let mut path: Vec<String> = e.path.iter().filter(|p| *p != section).cloned().collect();
            if !section.is_empty() {
                path.insert(0, section.to_string());
            }
            let key = path.join(".");
            let message = describe(&e.kind, &key);
            let origin = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(figment::Source::File(p)) => p.display().to_string(),
                    _ if m.name == "environment variable" => {
                        let keys: Vec<&str> = key.split('.').collect();
                        format!("environment variable {}", variable_for(&keys))
                    }
                    _ => m.name.to_string(),
                })
                .or_else(|| origin(figment, &key));
            Problem::new(key, message).with_origin(origin)
        })
        .collect()
}

/// What serde said, plus what a correct value looks like. Never the
/// value of a secret key.
fn describe(kind: &Kind, key: &str) -> String {
    if super::secret::is_secret_key(key) {
        return match kind {
            Kind::InvalidType(actual, _) => format!(
                "must be text, not a {} (the value is a secret and is not shown); quote it in TOML",
                kind_name(actual)
            ),
            _ => "unusable value (it is a secret and is not shown)".to_string(),
        };
    }
    let base = match kind {
        Kind::UnknownVariant(found, expected) => {
            let list: Vec<String> = expected.iter().map(|v| format!("\"{v}\"")).collect();
            return format!("unknown value \"{found}\"; use one of {}", list.join(", "));
        }
        Kind::UnknownField(found, expected) => {
            return format!("unknown key `{found}`; known keys: {}", expected.join(", "));
        }
        // A syntax error quotes the offending line, which may be a
        // secret written without quotes: keep the position and the
        // reason, drop the quoted source.
        Kind::Message(m) => m
            .lines()
            .filter(|l| {
                let t = l
                    .trim_start()
                    .trim_start_matches(|c: char| c.is_ascii_digit());
                !t.trim_start().starts_with('|') && !l.trim().is_empty()
            })
            .collect::<Vec<_>>()
            .join("; "),
        Kind::InvalidType(actual, expected) => {
            format!(
                "expected {}, found a {}",
                friendly(expected),
                kind_name(actual)
            )
        }
        Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {}", friendly(expected), actual)
        }
        other => other.to_string(),
    };
    match hint(key) {
        Some(h) => format!("{base}; {h}"),
        None => base,
    }
}

/// The kind of a value, without the value.
/// What serde expected, in words a user writes config in: not `usize`.
fn friendly(expected: &str) -> String {
    let e = expected.trim();
    let words = match e {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" => "a whole number (0 or more)",
        "isize" | "i8" | "i16" | "i32" | "i64" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" => "text in quotes",
        _ if e.starts_with("struct ") || e.starts_with("a map") => "a table ([section])",
        _ if e.starts_with("a sequence") => "a list ([...])",
        _ => return e.to_string(),
    };
    words.to_string()
}

fn kind_name(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "boolean",
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "number",
        Actual::Char(_) | Actual::Str(_) => "string",
        Actual::Seq => "list",
        Actual::Map => "table",
        _ => "value of another kind",
    }
}

fn hint(key: &str) -> Option<&'static str> {
    let last = key.rsplit('.').next().unwrap_or(key);
    if key.starts_with("upstream.hosts.") || last.ends_with("url") || last == "authority_host" {
        return Some("write an absolute URL such as \"https://dev.azure.com\"");
    }
    if last.ends_with("timeout")
        || last.starts_with("shutdown_")
        || matches!(last, "refresh_before" | "max_lifetime")
    {
        return Some("write a duration such as \"30s\", \"5m\" or \"7d\"");
    }
    if last == "address" {
        return Some("write an IP address and port such as \"127.0.0.1:8080\"");
    }
    if last.ends_with("_file") {
        return Some("write a file path as a string");
    }
    if last == "scopes" || last.starts_with("allowed_") {
        return Some("write a list of strings such as [\"a\", \"b\"]");
    }
    if last == "max_header_bytes" {
        return Some("write a whole number of bytes such as 65536");
    }
    None
}

/// The known key nearest to a typo, if it is close enough to be one.
fn closest<'a>(typo: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(typo, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
