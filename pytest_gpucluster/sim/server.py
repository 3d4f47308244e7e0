"""HTTP face of the simulated cluster: an aiohttp app speaking the Kubernetes REST API (auth, RBAC, faults, CRUD, watch, pods/log)."""
from __future__ import annotations

import asyncio
import base64
import collections
import json
import random
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from . import apply, protobuf, resources
from .controllers.base import rfc3339
from .errors import ApiError, BadRequest, Gone, MethodNotAllowed, NotFound, Unauthorized, UnsupportedMediaType
from .patch import CONTENT_TYPES
from .rbac import Authorizer
from .resources import ResourceType
from .store import Obj, Store
from .resources import to_table, wants_table

PUBLIC_PATHS = ("/version", "/version/", "/healthz", "/livez", "/readyz")
DEFAULT_WATCH_TIMEOUT = 1800.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FaultConfig:
    """Steady API faults (the `api-flaky` scenario): a fraction of resource requests fails."""

    error_rate: float = 0.0
    seed: int = 0
    kinds: list[int | str] = field(default_factory=lambda: [429, 500, 503, "drop"])
    retry_after_seconds: int = 1

    @classmethod
    def from_spec(cls, spec: Any) -> "FaultConfig":
        """From the scenario's `api` section (duck-typed: error_rate, seed, kinds, retry_after_seconds)."""
        return cls(float(getattr(spec, "error_rate", 0.0) or 0.0), int(getattr(spec, "seed", 0) or 0),
                   list(getattr(spec, "kinds", None) or [429, 500, 503, "drop"]),
                   int(getattr(spec, "retry_after_seconds", 1) or 1))


@dataclass
class ServerInfo:
    kubernetes_version: str = "1.32"
    platform: str = "linux/amd64"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


def _status_response(err: ApiError) -> web.Response:
    return _json(err.status(), err.code, err.headers or None)


def _success(details: dict[str, Any] | None = None) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details or {}}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


@dataclass
class Target:
    """What a resource URL addresses."""

    rtype: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None

    @property
    def rbac_resource(self) -> str:
        return f"{self.rtype.plural}/{self.sub}" if self.sub else self.rtype.plural


class ApiServer:
    """The aiohttp application around a Store. Run it on the store's event loop."""

    def __init__(self, store: Store, token: str | None = None, *, authorizer: Authorizer | None = None,
                 faults: FaultConfig | None = None, log_dir: Path | None = None,
                 info: ServerInfo | None = None, bookmark_interval: float = 5.0) -> None:
        self.store = store
        self.token = token or secrets.token_urlsafe(32)
        self.authorizer = authorizer
        self.faults = faults or FaultConfig()
        self._fault_rng = random.Random(self.faults.seed)
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.log_dir = log_dir
        self.info = info or ServerInfo()
        self.bookmark_interval = bookmark_interval
        self._watch_responses: set[web.StreamResponse] = set()
        self._json_cache: collections.OrderedDict[tuple[str, str, str, str], bytes] = collections.OrderedDict()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app = web.Application(middlewares=[self._errors, self._auth, self._fault_middleware],
                                   client_max_size=64 * 1024 * 1024)
        r = self.app.router
        r.add_get("/version", self.version)
        r.add_get("/version/", self.version)
        for probe in ("/healthz", "/livez", "/readyz"):
            r.add_get(probe, self.healthz)
        r.add_get("/openapi/v3", self.openapi_v3)
        r.add_get("/openapi/v2", self.openapi_v2)
        r.add_get("/api", self.api)
        r.add_get("/apis", self.apis)
        r.add_route("*", "/api/{tail:.*}", self.resource)
        r.add_route("*", "/apis/{tail:.*}", self.resource)

    # ----- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        for w in list(self.store._watches.values()):
            for watch in list(w):
                watch.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----- middlewares -------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return _status_response(err)
        except web.HTTPNotFound:
            return _status_response(NotFound("the server could not find the requested resource",
                                             details={}))
        except web.HTTPMethodNotAllowed:
            return _status_response(MethodNotAllowed(f"the server does not allow this method on the requested "
                                                     f"resource ({request.method} {request.path})"))

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(presented.strip().encode(), self.token.encode()):
            raise Unauthorized("Unauthorized")
        return await handler(request)

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        f = self.faults
        parts = [p for p in request.path.split("/") if p]
        discovery = not parts or len(parts) <= (2 if parts[0] == "api" else 3)
        if f.error_rate <= 0 or discovery or request.path in PUBLIC_PATHS:
            return await handler(request)
        if self._fault_rng.random() >= f.error_rate:
            return await handler(request)
        kind = self._fault_rng.choice(f.kinds)
        self.fault_counts[str(kind)] += 1
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError  # aiohttp writes nothing on a closed transport
        if kind == 429:
            raise ApiError("Too many requests, please try again later.", code=429, reason="TooManyRequests",
                           details={"retryAfterSeconds": f.retry_after_seconds},
                           headers={"Retry-After": str(f.retry_after_seconds)})
        if kind == 503:
            raise ApiError("the server is currently unable to handle the request", code=503,
                           reason="ServiceUnavailable")
        raise ApiError('an error on the server ("simulated fault (api-flaky)") has prevented the request from '
                       "succeeding", code=500, reason="InternalError")

    # ----- discovery --------------------------------------------------------------------------
    async def version(self, request: web.Request) -> web.Response:
        major, _, minor = self.info.kubernetes_version.partition(".")
        return _json({"major": major, "minor": minor + "+", "gitVersion": f"v{self.info.kubernetes_version}.0-eks-sim",
                      "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                      "goVersion": "go1.23.0", "compiler": "gc", "platform": self.info.platform})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def openapi_v3(self, request: web.Request) -> web.Response:
        """An OpenAPI v3 root with no group-versions: kubectl then validates nothing client-side and
        computes apply patches from its compiled-in types (strategic) or as merge patches (CRDs)."""
        return _json({"paths": {}})

    async def openapi_v2(self, request: web.Request) -> web.Response:
        """A swagger document without definitions (kubectl falls back to it for client-side validation and
        asks for protobuf, where the empty message is a Document with no definitions)."""
        if "protobuf" in request.headers.get("Accept", ""):
            return web.Response(body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        return _json({"swagger": "2.0", "info": {"title": "Kubernetes", "version": f"v{self.info.kubernetes_version}.0"},
                      "paths": {}, "definitions": {}})

    async def api(self, request: web.Request) -> web.Response:
        return _json(resources.api_versions())

    async def apis(self, request: web.Request) -> web.Response:
        return _json(resources.api_group_list(self.store.crds()))

    # ----- resources ----------------------------------------------------------------------------
    def _target(self, request: web.Request) -> Target | Obj:
        """Parse /api/v1/... or /apis/<g>/<v>/...; discovery documents are returned as dicts."""
        parts = [p for p in request.path.split("/") if p]
        crds = self.store.crds()
        if len(parts) == 1:  # "/api/" and "/apis/", as the Python client spells them
            return resources.api_versions() if parts[0] == "api" else resources.api_group_list(crds)
        if parts[0] == "api":
            if parts[1] != "v1":
                raise NotFound("the server could not find the requested resource", details={})
            group, version, rest = "", "v1", parts[2:]
        else:
            group, rest = parts[1], parts[3:]
            version = parts[2] if len(parts) > 2 else ""
            if len(parts) == 2:
                doc = resources.api_group(group, crds)
                if doc is None:
                    raise NotFound("the server could not find the requested resource", details={})
                return doc
        if not rest:
            doc = resources.resource_list(group, version, crds)
            if doc is None:
                raise NotFound("the server could not find the requested resource", details={})
            return doc
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and resources.by_path(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        rtype = resources.by_path(group, version, rest[0])
        if rtype is None or (rtype.custom and resources.crd_name(rtype.key) not in crds) or len(rest) > 3:
            raise NotFound("the server could not find the requested resource", details={})
        if namespace is not None and not rtype.namespaced:
            raise NotFound("the server could not find the requested resource", details={})
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rtype.subresources:
            raise NotFound("the server could not find the requested resource", details={})
        return Target(rtype, namespace, name, sub)

    async def resource(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request)
        if isinstance(target, dict):
            if request.method != "GET":
                raise MethodNotAllowed(f"the server does not allow this method on the requested resource")
            return _json(target)
        verb = self._verb(request, target)
        self.store.request_counts[f"{verb} {target.rbac_resource}"] += 1
        if self.authorizer is not None:
            self.authorizer.check(verb, target.rtype.group, target.rbac_resource, target.namespace, target.name)
        if target.rtype.custom and request.content_type == protobuf.CONTENT_TYPE:
            # custom resources have no protobuf form: apiextensions-apiserver serves JSON and YAML only
            raise UnsupportedMediaType("the body of the request was in an unknown format - accepted media types "
                                       "include: application/json, application/yaml")
        handler = getattr(self, f"_do_{verb}")
        return await handler(request, target)

    def _verb(self, request: web.Request, t: Target) -> str:
        m = request.method
        if t.sub == "log":
            if m != "GET":
                raise MethodNotAllowed("the server does not allow this method on the requested resource")
            return "get"
        if t.sub in ("eviction", "binding"):
            if m != "POST":
                raise MethodNotAllowed("the server does not allow this method on the requested resource")
            return "create"
        if t.name is None:
            if m == "GET":
                return "watch" if _truthy(request.query.get("watch")) else "list"
            if m == "POST":
                return "create"
            if m == "DELETE":
                return "deletecollection"
        else:
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
            if m in verbs and not (m == "GET" and _truthy(request.query.get("watch"))):
                return verbs[m]
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource")

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        ctype = request.content_type
        try:
            if ctype == protobuf.CONTENT_TYPE:  # typed client-go >= 1.32 sends built-in kinds this way
                return protobuf.decode(raw)
            if "yaml" in ctype:
                import yaml
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, Exception) as exc:  # noqa: BLE001 - any decode error is the client's BadRequest
            raise BadRequest(f"the body of the request could not be decoded as {ctype}: {exc}") from exc

    def _render(self, request: web.Request, t: Target, obj: Obj, status: int = 200) -> web.Response:
        if wants_table(request.headers.get("Accept", "")):
            return _json(to_table(t.rtype, [obj], obj["metadata"].get("resourceVersion", ""),
                                  request.query.get("includeObject", "Metadata")), status)
        return _json(obj, status)

    async def _do_get(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None  # noqa: S101 - _verb guarantees it
        if t.sub == "log":
            return await self._logs(request, t)
        obj = self.store.get(t.rtype.key, t.namespace, t.name)
        return self._render(request, t, obj)

    async def _do_list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        items, rv = self.store.list(t.rtype.key, t.namespace, label_selector=q.get("labelSelector"),
                                    field_selector=q.get("fieldSelector"))
        meta: Obj = {"resourceVersion": rv}
        limit = int(q.get("limit") or 0)
        if q.get("continue"):
            try:
                last = json.loads(base64.urlsafe_b64decode(q["continue"].encode()))["last"]
            except (ValueError, KeyError) as exc:
                raise BadRequest(f"continue key is not valid: {exc}") from exc
            items = [i for i in items if [i["metadata"].get("namespace", ""), i["metadata"]["name"]] > last]
        if limit and len(items) > limit:
            last_item = items[limit - 1]["metadata"]
            token = {"last": [last_item.get("namespace", ""), last_item["name"]], "rv": rv}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if wants_table(request.headers.get("Accept", "")):
            table = to_table(t.rtype, items, rv, q.get("includeObject", "Metadata"))
            table["metadata"].update(meta)
            return _json(table)
        return _json({"kind": t.rtype.list_kind, "apiVersion": t.rtype.api_version, "metadata": meta,
                      "items": items})

    async def _do_create(self, request: web.Request, t: Target) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        dry_run = request.query.get("dryRun") == "All"
        if t.sub == "eviction":
            assert t.name is not None  # noqa: S101
            opts = body.get("deleteOptions") or {}
            self.store.delete("pods", t.namespace, t.name, grace_seconds=opts.get("gracePeriodSeconds"),
                              dry_run=dry_run)
            return _json(_success({"name": t.name, "kind": "pods"}), 201)
        if t.sub == "binding":
            return self._bind(t, body)
        meta = body.setdefault("metadata", {})
        if t.rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != t.namespace:
                raise BadRequest("the namespace of the provided object does not match the namespace sent on the "
                                 "request")
            meta["namespace"] = t.namespace or "default"
        self._check_kind(t, body)
        obj = self.store.create(t.rtype.key, body, dry_run=dry_run)
        return self._render(request, t, obj, 201)

    def _bind(self, t: Target, body: Obj) -> web.Response:
        node = (body.get("target") or {}).get("name")
        if not node:
            raise BadRequest("Binding target must name a node")

        def bind(pod: Obj) -> None:
            if (pod.get("spec") or {}).get("nodeName"):
                raise ApiError(f'Operation cannot be fulfilled on pods/binding "{t.name}": pod {t.name} is already '
                               f'assigned to node "{pod["spec"]["nodeName"]}"', code=409, reason="Conflict")
            pod["spec"]["nodeName"] = node
        self.store.mutate("pods", t.namespace, t.name or "", bind)
        return _json(_success(), 201)

    def _check_kind(self, t: Target, body: Obj) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != t.rtype.kind and not t.rtype.storage:
            raise BadRequest(f"the server could not process a {kind} at the {t.rtype.plural} endpoint")
        if api_version and api_version != t.rtype.api_version:
            raise BadRequest(f'the API version in the data ({api_version}) does not match the expected API '
                             f'version ({t.rtype.api_version})')

    async def _do_update(self, request: web.Request, t: Target) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != t.name:
            raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})")
        meta["name"] = t.name
        if t.rtype.namespaced:
            meta["namespace"] = t.namespace
        self._check_kind(t, body)
        obj = self.store.replace(t.rtype.key, body, subresource=t.sub, dry_run=request.query.get("dryRun") == "All")
        return self._render(request, t, obj)

    async def _do_patch(self, request: web.Request, t: Target) -> web.Response:
        patch_type = CONTENT_TYPES.get(request.content_type)
        if patch_type == "apply":
            return await self._apply(request, t)
        if patch_type is None:
            raise UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json")
        body = await self._body(request)
        obj = self.store.patch(t.rtype.key, t.namespace, t.name or "", body, patch_type, subresource=t.sub,
                               dry_run=request.query.get("dryRun") == "All")
        return self._render(request, t, obj)

    async def _apply(self, request: web.Request, t: Target) -> web.Response:
        """Server-side apply (apply.py): creates the object when missing (201), else merges and records ownership."""
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be an object")
        self._check_kind(t, body)
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != t.name:
            raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})")
        if t.rtype.namespaced and meta.get("namespace") and meta["namespace"] != t.namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        q = request.query
        dry_run = q.get("dryRun") == "All"
        try:
            live: Obj | None = self.store.get(t.rtype.key, t.namespace, t.name or "")
        except NotFound:
            live = None
        if live is None and t.sub:
            raise NotFound.of(t.rtype.plural, t.rtype.group, t.name or "")
        obj = apply.apply(live, body, manager=q.get("fieldManager", ""), force=_truthy(q.get("force")),
                          api_version=t.rtype.api_version, kind=t.rtype.kind, now=rfc3339(self.store.clock()),
                          subresource=t.sub)
        if live is None:
            obj["metadata"]["name"] = t.name
            if t.rtype.namespaced:
                obj["metadata"]["namespace"] = t.namespace
            return self._render(request, t, self.store.create(t.rtype.key, obj, dry_run=dry_run), 201)
        return self._render(request, t, self.store.replace(t.rtype.key, obj, subresource=t.sub, dry_run=dry_run))

    def _delete_options(self, request: web.Request, body: Any) -> tuple[str, int | None, dict[str, str]]:
        opts = body if isinstance(body, dict) else {}
        q = request.query
        policy = q.get("propagationPolicy") or opts.get("propagationPolicy")
        orphan = q.get("orphanDependents", opts.get("orphanDependents"))
        if policy is None and orphan is not None:
            policy = "Orphan" if _truthy(str(orphan)) else "Background"
        grace = q.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
        return policy or "", None if grace is None else int(grace), opts.get("preconditions") or {}

    async def _do_delete(self, request: web.Request, t: Target) -> web.Response:
        policy, grace, pre = self._delete_options(request, await self._body(request))
        obj = self.store.delete(t.rtype.key, t.namespace, t.name or "", propagation=policy or t.rtype.gc_default,
                                grace_seconds=grace, preconditions=pre, dry_run=request.query.get("dryRun") == "All")
        return _json(obj)

    async def _do_deletecollection(self, request: web.Request, t: Target) -> web.Response:
        policy, grace, _ = self._delete_options(request, await self._body(request))
        items, _ = self.store.list(t.rtype.key, t.namespace, label_selector=request.query.get("labelSelector"),
                                   field_selector=request.query.get("fieldSelector"))
        for item in items:
            meta = item["metadata"]
            try:
                self.store.delete(t.rtype.key, meta.get("namespace"), meta["name"],
                                  propagation=policy or t.rtype.gc_default, grace_seconds=grace)
            except NotFound:
                continue  # already removed by a cascade earlier in this loop
        return _json(_success({"kind": t.rtype.plural}))

    # ----- watch ---------------------------------------------------------------------------------
    def _encode(self, rtype: ResourceType, etype: str, obj: Obj, table: str | None) -> bytes:
        rv = obj["metadata"].get("resourceVersion", "")
        cache_key = (rtype.key, rv, etype, table or "")
        data = self._json_cache.get(cache_key) if etype != "BOOKMARK" else None
        if data is None:
            if table and etype != "BOOKMARK":
                obj = to_table(rtype, [obj], rv, table)
            data = json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"
            if etype != "BOOKMARK":
                self._json_cache[cache_key] = data
                if len(self._json_cache) > 512:
                    self._json_cache.popitem(last=False)
        return data

    async def _do_watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        table = q.get("includeObject", "Metadata") if wants_table(request.headers.get("Accept", "")) else None
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        try:
            watch = self.store.watch(t.rtype.key, t.namespace, resource_version=q.get("resourceVersion"),
                                     label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                                     bookmarks=_truthy(q.get("allowWatchBookmarks")),
                                     bookmark_interval=self.bookmark_interval, copy=False)
        except Gone as err:  # the apiserver reports an expired RV as an ERROR event on a 200 stream
            await response.prepare(request)
            await response.write(json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n")
            await response.write_eof()
            return response
        response.enable_chunked_encoding()
        await response.prepare(request)
        self._watch_responses.add(response)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    etype, obj = await asyncio.wait_for(watch.__anext__(), remaining)
                except (StopAsyncIteration, asyncio.TimeoutError):
                    break
                await response.write(self._encode(t.rtype, etype, obj, table))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away (a watch ends that way all the time)
        finally:
            watch.close()
            self._watch_responses.discard(response)
        return response

    # ----- pods/log -------------------------------------------------------------------------------
    def log_path(self, namespace: str, pod: str, container: str) -> Path | None:
        """Where the kubelet writes a container's log: <log_dir>/<namespace>_<pod>/<container>.log."""
        if self.log_dir is None:
            return None
        return self.log_dir / f"{namespace}_{pod}" / f"{container}.log"

    async def _logs(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        pod = self.store.get("pods", t.namespace, t.name or "")
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = q.get("container")
        if not container:
            if len(names) != 1:
                raise BadRequest(f"a container name must be specified for pod {t.name}, choose one of: "
                                 f"[{' '.join(names)}]")
            container = names[0]
        init = [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
        if container not in names and container not in init:
            raise BadRequest(f"container {container} is not valid for pod {t.name}")
        path = self.log_path(t.namespace or "default", t.name or "", container)
        if path is None or not path.exists():
            state = _container_state(pod, container)
            if "terminated" not in state:
                reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
                raise BadRequest(f'container "{container}" in pod "{t.name}" is waiting to start: {reason}')
            return web.Response(body=b"", content_type="text/plain")
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        data = path.read_bytes()
        size = len(data)
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if not _truthy(q.get("follow")):
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await self._follow(response, path, data, size, t, container)
        except ConnectionResetError:
            pass  # `kubectl logs -f` interrupted
        return response

    async def _follow(self, response: web.StreamResponse, path: Path, data: bytes, offset: int, t: Target,
                      container: str) -> None:
        """Stream what the kubelet appends after `offset` until the container terminated or the pod is gone."""
        await response.write(data)
        finished = False
        while True:
            size = path.stat().st_size if path.exists() else offset
            if size > offset:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(size - offset)
                offset += len(chunk)
                await response.write(chunk)
                continue
            if finished:  # one last read after the container ended, then stop
                break
            await asyncio.sleep(0.05)
            try:
                current = self.store.get("pods", t.namespace, t.name or "")
                finished = "terminated" in _container_state(current, container)
            except NotFound:
                finished = True
        await response.write_eof()


def _container_state(pod: Obj, container: str) -> Obj:
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("name") == container:
            return cs.get("state") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return {"terminated": {}}
    return {}
