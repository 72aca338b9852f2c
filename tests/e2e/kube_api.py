"""A loopback stand-in for the few Kubernetes API calls the capacity planner makes.

No cluster runs here, so the real ``kubernetes`` client talks HTTP to this server instead:
list nodes by label, patch a deployment's scale (404 until it exists), create a
deployment. It keeps what it was sent, for the test to check.
"""

from __future__ import annotations

import re
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.json_handler import JsonHandler

SCALE = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale$")
DEPLOYMENTS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments$")


def gpu_node(name: str, product: str, gpus: int, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}}, "spec": {},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class KubeApi(ThreadingHTTPServer):
    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.nodes = nodes
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(JsonHandler):
    server: KubeApi

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.server.requests.append(("GET", url.path))
        if url.path != "/api/v1/nodes":
            return self.reply(404, {"kind": "Status", "code": 404})
        key, _, value = parse_qs(url.query).get("labelSelector", ["="])[0].partition("=")
        items = [n for n in self.server.nodes if n["metadata"]["labels"].get(key) == value]
        self.reply(200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items})

    def do_PATCH(self) -> None:
        self.server.requests.append(("PATCH", self.path))
        match = SCALE.match(urlparse(self.path).path)
        deployment = self.server.deployments.get(match.groups()) if match else None
        if deployment is None:
            return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                     "reason": "NotFound"})
        deployment["spec"]["replicas"] = self.body()["spec"]["replicas"]
        self.reply(200, {"apiVersion": "autoscaling/v1", "kind": "Scale",
                          "metadata": {"name": match.group(2), "namespace": match.group(1)},
                          "spec": {"replicas": deployment["spec"]["replicas"]}})

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        match = DEPLOYMENTS.match(urlparse(self.path).path)
        if not match:
            return self.reply(404, {"kind": "Status", "code": 404})
        body = self.body()
        self.server.deployments[(match.group(1), body["metadata"]["name"])] = body
        self.reply(201, body)
