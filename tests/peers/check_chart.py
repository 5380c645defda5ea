"""Renders and lints the Helm chart offline with Helm's own SDK
(helm-python-sdk) for the default values and every example values file.
Writes each case's manifests and the proxy config the chart renders to
OUT/<case>/, and prints a JSON summary. Usage: check_chart.py CHART OUT"""
import json
import pathlib
import sys

import helm_python
import yaml

chart_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
cases = {"default": {}}
for f in sorted((chart_dir / "examples").glob("*.yaml")):
    cases[f.stem] = yaml.safe_load(f.read_text()) or {}

summary = {}
chart = helm_python.Chart.load(str(chart_dir))
for name, values in cases.items():
    lint = helm_python.lint(str(chart_dir), values, strict=True, kube_version="v1.30.0")
    problems = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"error": e} for e in lint.get("errors", [])]
    rendered = chart.render(values, name="proxy", namespace="tools", is_install=True)
    case_dir = out / name
    case_dir.mkdir(parents=True, exist_ok=True)
    manifests, config, kinds = [], None, []
    for path, text in sorted(rendered.items()):
        docs = [d for d in yaml.safe_load_all(text) if d]
        for i, doc in enumerate(docs):
            kinds.append(doc["kind"])
            if doc["kind"] == "ConfigMap":
                config = doc["data"]["config.toml"]
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # CRDs: not in the Kubernetes schemas
            target = case_dir / f"{pathlib.Path(path).stem}-{i}.yaml"
            target.write_text(yaml.safe_dump(doc))
            manifests.append(str(target))
    (case_dir / "config.toml").write_text(config or "")
    summary[name] = {
        "lint_problems": problems,
        "manifests": manifests,
        "kinds": sorted(kinds),
        "config": str(case_dir / "config.toml"),
    }
# The schema refuses a misspelt key instead of ignoring it.
try:
    chart.render({"confg": {}}, name="proxy", namespace="tools")
    refused = False
except helm_python.HelmError:
    refused = True
# The schema looks inside config: too (generated from the config types).
try:
    chart.render({"config": {"auth": {"mdoe": "pat"}}}, name="proxy", namespace="tools")
    config_typo_refused = False
except helm_python.HelmError:
    config_typo_refused = True
# An Ingress in front of one identity (modes pat, service) without a
# caller secret is refused at render; with one it renders.
ingress = {"enabled": True, "host": "ado.example.com"}
open_to_all = {"config": {"auth": {"mode": "pat"}}, "ingress": ingress}
try:
    chart.render(open_to_all, name="proxy", namespace="tools")
    ingress_refused = False
except helm_python.HelmError as e:
    ingress_refused = "caller_secret_file" in str(e)
guarded = {"config": {"auth": {"mode": "pat", "caller_secret_file": "/run/secrets/caller", "allow_remote_callers": True}}, "ingress": ingress}
try:
    chart.render(guarded, name="proxy", namespace="tools")
    guarded_renders = True
except helm_python.HelmError:
    guarded_renders = False
# Modes pat and service behind the chart's Service need a caller rule (the
# proxy would refuse to start): refused at render, naming the keys.
try:
    chart.render({"config": {"auth": {"mode": "pat"}}}, name="proxy", namespace="tools")
    open_identity_refused = False
except helm_python.HelmError as e:
    open_identity_refused = "allow_remote_callers" in str(e)
print(json.dumps({"cases": summary, "open_identity_refused": open_identity_refused, "schema_refuses_typo": refused,
                  "schema_refuses_config_typo": config_typo_refused,
                  "ingress_without_caller_secret_refused": ingress_refused,
                  "ingress_with_caller_secret_renders": guarded_renders}))
