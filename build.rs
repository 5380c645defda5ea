//! Records the git revision the proxy is built from, for the start-up log
//! and `ado_proxy_build_info`: `git rev-parse` in a checkout, else the
//! `ADO_PROXY_BUILD_REVISION` variable (the container build passes it),
//! else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ADO_PROXY_BUILD_REVISION");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        // A new commit or checkout changes one of these.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    let revision = std::env::var("ADO_PROXY_BUILD_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Only what a revision is made of reaches the binary.
    let revision: String = revision
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    println!("cargo:rustc-env=ADO_PROXY_BUILD_REVISION={revision}");
}
