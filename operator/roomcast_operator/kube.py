"""A small async REST layer over the official Kubernetes client.

kopf watches and dispatches; this does the writes. One generic request function (run
in a thread, the client is synchronous) covers built-in kinds and optional CRDs alike,
and server-side apply keeps every child declarative.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from kubernetes import client, config

from . import FIELD_MANAGER, GROUP, PLURAL, VERSION
from .metrics import METRICS

Obj = dict[str, Any]

KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Secret"): "secrets",
    ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ControllerRevision"): "controllerrevisions",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitors",
    (f"{GROUP}/{VERSION}", "RoomcastCluster"): PLURAL,
}


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body[:500]}")


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{scope}/{KINDS[(api_version, kind)]}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{name}"


class Kube:
    """The operator's connection to the API server."""

    def __init__(self) -> None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        self._client = client.ApiClient()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj | None:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        resource = path + ("?" + urlencode(query) if query else "")
        _, url, headers, body, _ = self._client.param_serialize(
            method, resource, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self._client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=30
        )
        raw: bytes = response.read()  # type: ignore[no-untyped-call]
        METRICS.api_write(method, path, response.status)
        if response.status >= 400:
            raise ApiError(response.status, raw.decode(errors="replace"))
        parsed: Obj | None = json.loads(raw) if raw else None
        return parsed

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj | None:
        return await asyncio.to_thread(self._call, method, path, body, query, content_type)

    async def get(self, path: str) -> Obj | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str = "") -> list[Obj]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, query=query)
        return list((result or {}).get("items") or [])

    async def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER, force: bool = True) -> Obj:
        """Server-side apply, by default as the operator's field manager taking over conflicts."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        result = await self.request(
            "PATCH",
            path,
            body=obj,
            query={"fieldManager": field_manager, "force": str(force).lower()},
            content_type="application/apply-patch+yaml",
        )
        return result or {}

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        path = collection_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=obj) or {}

    async def delete(self, path: str) -> bool:
        try:
            await self.request("DELETE", path)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def merge_patch(self, path: str, patch: Obj) -> Obj:
        result = await self.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        return result or {}

    async def serves(self, api_version: str, plural: str) -> bool:
        """True if the API server serves ``plural`` in ``api_version`` (discovery).

        An unknown group is a plain False; any other error (an aggregated API down, the
        API server overloaded) raises, since it says nothing about what is served.
        """
        try:
            found = await self.request("GET", f"/apis/{api_version}")
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in (found or {}).get("resources") or [])
