"""Calls Azure DevOps' own Python SDK (PyPI azure-devops) against the
proxy and prints how it failed, as JSON: {"type": ..., "message": ...}.

Usage: ado_sdk_call.py BASE_URL   (e.g. http://127.0.0.1:PORT/contoso)
"""
import json
import sys

from azure.devops.connection import Connection
from msrest.authentication import BasicAuthentication

base = sys.argv[1]
connection = Connection(base_url=base, creds=BasicAuthentication("", "unused-the-proxy-adds-it"))
try:
    projects = connection.clients.get_core_client().get_projects()
    print(json.dumps({"type": None, "message": "succeeded", "count": len(projects or [])}))
except Exception as e:  # the point is to report whatever the SDK raised
    print(json.dumps({"type": type(e).__name__, "message": str(e)}))
