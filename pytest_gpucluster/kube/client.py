"""The Cluster client: the suite's only way to the Kubernetes API (typed errors, timeouts, retries)."""
from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import retry
from . import errors, kubeconfig
from .resources import Resource, resource

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0
VERSION_TIMEOUT_S = 5.0      # first contact: an endpoint that accepts but never answers fails fast
_CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)


class Cluster:
    """A connected cluster. Objects in and out are plain dicts, exactly as the REST API speaks them.

    `tap`, when set, sees every request and watch at this boundary: bundle/recording.py records them (the report
    folder's recording), bundle/replay.py answers them from a recording instead of the server (`gpucluster judge`).
    """

    tap: Any = None

    def __init__(self, creds: kubeconfig.Credentials, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.creds = creds
        self.server_url = creds.server
        self.context = creds.context
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.api = client.ApiClient(creds.configuration)
        self.request_count = 0

    @classmethod
    def connect(cls, kubeconfig_path: str | os.PathLike[str] | None = None, context: str | None = None,
                **kwargs: Any) -> "Cluster":
        """Load credentials like kubectl and check the server answers (fails within seconds if not)."""
        cluster = cls(kubeconfig.load(kubeconfig_path, context), **kwargs)
        cluster.version()
        return cluster

    def close(self) -> None:
        self.api.close()

    def write_kubeconfig(self, dest: Path) -> Path:
        """A standalone kubeconfig for kubectl-based tools, pointing at this cluster and context."""
        return kubeconfig.write_standalone(self.creds, dest)

    # -- raw calls ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, site: errors.CallSite, query: dict[str, Any] | None = None,
                 body: Any = None, content_type: str | None = None, stream: bool = False,
                 read_timeout_s: float | None = None) -> Any:
        if self.tap is not None and not stream:
            return self.tap.request(method, path, query or {}, body, site, lambda: self._send(
                method, path, site=site, query=query, body=body, content_type=content_type,
                read_timeout_s=read_timeout_s))
        return self._send(method, path, site=site, query=query, body=body, content_type=content_type, stream=stream,
                          read_timeout_s=read_timeout_s)

    def _send(self, method: str, path: str, *, site: errors.CallSite, query: dict[str, Any] | None = None,
              body: Any = None, content_type: str | None = None, stream: bool = False,
              read_timeout_s: float | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        timeout = (self.timeouts[0], read_timeout_s or self.timeouts[1])
        self.request_count += 1
        try:
            resp = self.api.call_api(
                path, method, query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
                header_params=headers, body=body, auth_settings=["BearerToken"],
                _preload_content=False, _request_timeout=timeout)
        except ApiException as exc:
            raise errors.from_api_exception(exc, site) from exc
        except _CONNECTION_ERRORS as exc:
            raise errors.unreachable(exc, site) from exc
        if stream:
            return resp
        try:
            data = resp.data
        except _CONNECTION_ERRORS as exc:
            raise errors.unreachable(exc, site) from exc
        finally:
            resp.release_conn()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if "json" in (resp.getheader("Content-Type") or "") and text:
            return json.loads(text)
        return text

    def _site(self, verb: str, res: Resource, namespace: str | None, name: str | None = None) -> errors.CallSite:
        return errors.CallSite(verb, res.rbac_name, namespace if res.namespaced else None, name, self.server_url)

    def _call(self, policy: retry.Policy, fn: Callable[[], Any]) -> Any:
        return policy.call(fn)

    def _obj(self, policy: retry.Policy, fn: Callable[[], Any]) -> dict[str, Any]:
        """A call whose answer is one JSON object (a Kubernetes object, Status or /version)."""
        return cast(dict[str, Any], policy.call(fn))

    # -- verbs ---------------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        site = errors.CallSite("get", "/version", None, None, self.server_url)
        return self._obj(retry.CONNECT, lambda: self._request("GET", "/version", site=site,
                                                               read_timeout_s=VERSION_TIMEOUT_S))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        res = resource(kind)
        site = self._site("get", res, namespace, name)
        return self._obj(retry.IDEMPOTENT_READ,
                         lambda: self._request("GET", res.path(namespace, name), site=site))

    def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.get(kind, name, namespace)
        except errors.NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Items and the list's resourceVersion (to start a watch from)."""
        res = resource(kind)
        site = self._site("list", res, namespace)
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        data = self._call(retry.IDEMPOTENT_READ,
                          lambda: self._request("GET", res.path(namespace), site=site, query=query))
        return list(data.get("items") or []), str(data.get("metadata", {}).get("resourceVersion", ""))

    def items(self, kind: str, namespace: str | None = None, **selectors: str | None) -> builtins.list[dict[str, Any]]:
        return self.list(kind, namespace, **selectors)[0]

    def create(self, kind: str, body: dict[str, Any], namespace: str | None = None, *, exist_ok: bool = True) -> dict[str, Any]:
        """Create; with a deterministic name this is idempotent (AlreadyExists -> the existing object)."""
        res = resource(kind)
        meta = body.get("metadata", {})
        name = meta.get("name")
        namespace = namespace or meta.get("namespace")
        site = self._site("create", res, namespace, name)
        policy = retry.IDEMPOTENT_WRITE if name else retry.NEVER
        try:
            return self._obj(policy, lambda: self._request("POST", res.path(namespace), site=site, body=body))
        except errors.AlreadyExists:
            if not exist_ok or not name:
                raise
            return self.get(kind, name, namespace)

    def patch(self, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        res = resource(kind)
        site = self._site("patch", res, namespace, name)
        return self._obj(retry.IDEMPOTENT_WRITE, lambda: self._request(
            "PATCH", res.path(namespace, name), site=site, body=patch,
            content_type="application/merge-patch+json"))

    def delete(self, kind: str, name: str, namespace: str | None = None, *, missing_ok: bool = True,
               propagation: str = "Background", grace_seconds: int | None = None) -> dict[str, Any] | None:
        res = resource(kind)
        site = self._site("delete", res, namespace, name)
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            return self._obj(retry.IDEMPOTENT_WRITE, lambda: self._request(
                "DELETE", res.path(namespace, name), site=site, body=body))
        except errors.NotFound:
            if missing_ok:
                return None
            raise

    def delete_collection(self, kind: str, namespace: str, *, label_selector: str,
                          grace_seconds: int | None = None) -> None:
        res = resource(kind)
        site = self._site("deletecollection", res, namespace)
        query: dict[str, Any] = {"labelSelector": label_selector, "propagationPolicy": "Background"}
        if grace_seconds is not None:
            query["gracePeriodSeconds"] = grace_seconds
        self._call(retry.IDEMPOTENT_WRITE, lambda: self._request(
            "DELETE", res.path(namespace), site=site, query=query))

    def logs(self, pod: str, namespace: str, *, container: str | None = None, tail_lines: int | None = None,
             limit_bytes: int | None = None) -> str:
        res = resource("pods")
        site = errors.CallSite("get", "pods/log", namespace, pod, self.server_url)
        query = {"container": container, "tailLines": tail_lines, "limitBytes": limit_bytes}
        out = self._call(retry.IDEMPOTENT_READ, lambda: self._request(
            "GET", res.path(namespace, pod, "log"), site=site, query=query))
        return out if isinstance(out, str) else json.dumps(out)

    def events_for(self, namespace: str, name: str, kind: str = "Pod") -> builtins.list[dict[str, Any]]:
        sel = f"involvedObject.name={name},involvedObject.kind={kind}"
        return self.items("events", namespace, field_selector=sel)

    def stream_watch(self, kind: str, namespace: str | None, *, resource_version: str | None,
                     label_selector: str | None, field_selector: str | None = None,
                     timeout_s: int) -> Iterator[dict[str, Any]]:
        """One watch request: yields raw watch events ({"type", "object"}) until the server closes it."""
        if self.tap is not None:
            query = {"labelSelector": label_selector, "fieldSelector": field_selector}
            yield from self.tap.watch(resource(kind).path(namespace), query, timeout_s, lambda: self._watch(
                kind, namespace, resource_version=resource_version, label_selector=label_selector,
                field_selector=field_selector, timeout_s=timeout_s))
            return
        yield from self._watch(kind, namespace, resource_version=resource_version, label_selector=label_selector,
                               field_selector=field_selector, timeout_s=timeout_s)

    def _watch(self, kind: str, namespace: str | None, *, resource_version: str | None,
               label_selector: str | None, field_selector: str | None = None,
               timeout_s: int) -> Iterator[dict[str, Any]]:
        res = resource(kind)
        site = self._site("watch", res, namespace)
        query = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                 "fieldSelector": field_selector, "timeoutSeconds": max(1, int(timeout_s)),
                 "allowWatchBookmarks": "true"}
        resp = self._call(retry.IDEMPOTENT_READ, lambda: self._request(
            "GET", res.path(namespace), site=site, query=query, stream=True, read_timeout_s=timeout_s + 10))
        try:
            buffer = b""
            for chunk in resp.stream(None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
        except _CONNECTION_ERRORS as exc:
            raise errors.unreachable(exc, site) from exc
        finally:
            resp.release_conn()
