"""Renders the Helm chart (Helm's own SDK, offline) with the values JSON in
argv[2] and prints what the kubelet would start for the proxy container:
the pod's and container's security contexts, args, env, probes, ports,
volume mounts with their volumes, and the ConfigMap's and Secret's data.
Usage: render_pod.py CHART VALUES_JSON"""
import json
import sys

import helm_python
import yaml

chart = helm_python.Chart.load(sys.argv[1])
values = json.loads(sys.argv[2])
rendered = chart.render(values, name="proxy", namespace="tools", is_install=True)
docs = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
pod = by_kind["Deployment"][0]["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "ado-auth-proxy")
volumes = {v["name"]: v for v in pod.get("volumes", [])}
secret = {}
for s in by_kind.get("Secret", []):
    secret.update(s.get("stringData") or {})
config_maps = {c["metadata"]["name"]: c["data"] for c in by_kind.get("ConfigMap", [])}
print(json.dumps({
    "pod_security": pod.get("securityContext", {}),
    "security": container.get("securityContext", {}),
    "args": container.get("args", []),
    "env": container.get("env", []),
    "ports": {p["name"]: p["containerPort"] for p in container.get("ports", [])},
    "probes": {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container},
    "mounts": [dict(m, volume=volumes[m["name"]]) for m in container.get("volumeMounts", [])],
    "config_maps": config_maps,
    "secret": secret,
    "enable_service_links": pod.get("enableServiceLinks"),
    "automount_token": pod.get("automountServiceAccountToken"),
}))
