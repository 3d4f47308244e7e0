"""The recording: every request the suites made at the kube/ and aws/ boundary and its answer, written beside the
report as `recording/` (schema: recording.schema.json, docs/report.md "The recording"), so the run can be re-judged
without the cluster (replay.py). What is recorded is what the gather code saw: Kubernetes objects (nodes, NodePools,
NodeClasses, DaemonSets and their pods, ClusterPolicy, CRDs, events), every probe and job pod it created and its
full log, AWS responses; redacted exactly as the report is (report/redact.py)."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..kube import errors as kube_errors
from ..report.redact import redact, redact_obj

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("recording.schema.json")
FOLDER = "recording"
INDEX = f"{FOLDER}/index.json.gz"
AWS_FILE = f"{FOLDER}/aws.json.gz"
BLOB_MIN = 512                   # outputs at least this long are stored once, by content (recording/outputs/)
# query keys that change from one run of the same code to the next and say nothing about what was asked
VOLATILE_QUERY = frozenset({"resourceVersion", "timeoutSeconds", "allowWatchBookmarks", "watch"})
_POD_PATH = re.compile(r"/namespaces/[^/]+/pods/(?P<pod>[^/]+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def thread_role(name: str | None = None) -> str:
    """Which thread asked, without its number: `MainThread`, `gpucluster-watch-pods`, `gpucluster-create`. The
    Karpenter observer watches from four threads at once; each replays its own recorded answers."""
    return re.sub(r"(?:[-_]\d+)+(?:\s.*)?$", "", name if name is not None else threading.current_thread().name)


def call_key(verb: str, path: str, query: dict[str, Any], name: str | None = None, role: str = "") -> str:
    """How a request is matched at replay: the asking thread's role, verb, path, the query without volatile keys, and
    a created object's name (every probe pod is POSTed to the same path)."""
    q = {k: str(v) for k, v in sorted(query.items()) if v is not None and k not in VOLATILE_QUERY}
    return json.dumps([role, verb, path, q, name], separators=(",", ":"))


def to_json(value: Any) -> Any:
    """AWS answers hold datetimes; everything else is JSON already."""
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return {"$bytes": value.decode("utf-8", "replace")}
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return dt.datetime.fromisoformat(value["$datetime"])
        if set(value) == {"$bytes"}:
            return value["$bytes"].encode()
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def error_json(exc: BaseException) -> dict[str, Any]:
    """A raised error as data, enough to raise the same type with the same message at replay."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": redact(str(exc))}
    for attr in ("status", "reason", "retry_after", "code", "operation", "unreachable"):
        value = getattr(exc, attr, None)
        if value is not None:
            out[attr] = redact(value) if isinstance(value, str) else value
    if isinstance(getattr(exc, "message", None), str):          # AwsCallFailed's own text, without the prefix
        out["detail"] = redact(getattr(exc, "message"))
    if isinstance(exc, kube_errors.ClusterError) and exc.site is not None:
        out["site"] = {k: getattr(exc.site, k) for k in ("verb", "resource", "namespace", "name")}
    return out


@dataclass
class Recorder:
    """The tap on Cluster (kube/client.py) and the AWS session (aws/session.py) of a recorded run. Thread-safe: fleets
    create, read and delete pods from a pool."""

    started: float = field(default_factory=time.time)
    calls: list[dict[str, Any]] = field(default_factory=list)
    aws_calls: list[dict[str, Any]] = field(default_factory=list)
    aws_opens: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _stamp(self) -> tuple[int, float]:
        with self._lock:
            self._seq += 1
            return self._seq, round(time.time() - self.started, 3)

    def _keep(self, bucket: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        with self._lock:
            if not self.closed:
                bucket.append(entry)

    # -- kube ------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, query: dict[str, Any], body: Any, site: Any,
                send: Callable[[], Any]) -> Any:
        name = (body.get("metadata") or {}).get("name") if method == "POST" and isinstance(body, dict) else None
        entry: dict[str, Any] = {"verb": method, "path": path, "query": {k: v for k, v in query.items()
                                                                        if v is not None}, "thread": thread_role()}
        if name:
            entry["name"] = name
        if method == "POST" and isinstance(body, dict):
            entry["body"] = redact_obj(body)
        try:
            result = send()
        except (kube_errors.ClusterError, OSError) as exc:
            entry["seq"], entry["t"] = self._stamp()
            entry["error"] = error_json(exc)
            self._keep(self.calls, entry)
            raise
        entry["seq"], entry["t"] = self._stamp()
        entry["result"] = redact_obj(result) if not isinstance(result, str) else redact(result)
        self._keep(self.calls, entry)
        return result

    def watch(self, path: str, query: dict[str, Any], timeout_s: int,
              open_watch: Callable[[], Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        seq, t0 = self._stamp()
        entry: dict[str, Any] = {"seq": seq, "t": t0, "verb": "WATCH", "path": path, "thread": thread_role(),
                                 "query": {k: v for k, v in query.items() if v is not None}, "events": []}
        try:
            for event in open_watch():
                entry["events"].append({"t": round(time.time() - self.started, 3), "event": redact_obj(event)})
                yield event
        except (kube_errors.ClusterError, OSError) as exc:
            entry["error"] = error_json(exc)
            raise
        finally:       # also when the consumer stops early (its condition was met): what it saw is recorded
            entry["t_end"] = round(time.time() - self.started, 3)
            self._keep(self.calls, entry)

    # -- aws -------------------------------------------------------------------------------------------
    def open_session(self, open_: Callable[[], Any]) -> Any:
        seq, _ = self._stamp()
        try:
            session = open_()
        except Exception as exc:        # AwsUnavailable / NoCredentials: the reason the AWS checks skipped
            self._keep(self.aws_opens, {"seq": seq, "t": self._stamp()[1], "error": error_json(exc)})
            raise
        self._keep(self.aws_opens, {"seq": seq, "t": self._stamp()[1], "result": {
            "region": session.region, "account_id": session.account_id,
            "target": {"cluster_name": session.target.cluster_name, "region": session.target.region}}})
        return session

    def aws_call(self, service: str, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        entry: dict[str, Any] = {"service": service, "operation": operation, "params": redact_obj(to_json(params))}
        try:
            result = call()
        except Exception as exc:        # AwsCallFailed / NoCredentials, re-raised unchanged
            entry["seq"], entry["t"] = self._stamp()
            entry["error"] = error_json(exc)
            self._keep(self.aws_calls, entry)
            raise
        entry["seq"], entry["t"] = self._stamp()
        entry["result"] = redact_obj(to_json(result))
        self._keep(self.aws_calls, entry)
        return result


def _pod_nodes(calls: list[dict[str, Any]]) -> dict[str, str]:
    """pod name -> node, from the pods as created (pinned by affinity or nodeName) and as later seen."""
    nodes: dict[str, str] = {}

    def learn(pod: Any) -> None:
        if not isinstance(pod, dict) or pod.get("kind") not in (None, "Pod"):
            return
        name, spec = (pod.get("metadata") or {}).get("name"), pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
            values = [v for t in terms for e in t.get("matchExpressions") or []
                      if e.get("key") == "kubernetes.io/hostname" for v in e.get("values") or []]
            node = values[0] if len(values) == 1 else None
        if name and node:
            nodes[str(name)] = str(node)

    for c in calls:
        if c.get("path", "").endswith("/pods"):
            learn(c.get("body"))
            result = c.get("result")
            learn(result)
            for item in (result or {}).get("items") or [] if isinstance(result, dict) else []:
                learn(item)
        for e in c.get("events") or []:
            learn((e.get("event") or {}).get("object"))
    return nodes


def _node_of(call: dict[str, Any], pods: dict[str, str]) -> str | None:
    pod = call.get("name") if call.get("verb") == "POST" and call.get("path", "").endswith("/pods") else None
    match = _POD_PATH.search(call.get("path", ""))
    return pods.get(str(pod or (match["pod"] if match else "")))


def probe_summary(pod: str, calls: list[dict[str, Any]], last: dict[str, Any] | None) -> dict[str, Any]:
    """One probe or job pod as a reader of the recording wants it: node, image, command, resources, outcome,
    timestamps and where its full output is."""
    created = next((c.get("body") for c in calls if c.get("verb") == "POST"), None) or {}
    obj = last or created
    container = ((obj.get("spec") or {}).get("containers") or [{}])[0]
    state = (((obj.get("status") or {}).get("containerStatuses") or [{}])[0]).get("state") or {}
    term = state.get("terminated") or {}
    logs = [c for c in calls if c.get("path", "").endswith("/log") and "result" in c]
    return {"pod": pod, "node": (obj.get("spec") or {}).get("nodeName"), "image": container.get("image"),
            "command": container.get("command"), "resources": container.get("resources"),
            "phase": (obj.get("status") or {}).get("phase"), "reason": term.get("reason") or
            (state.get("waiting") or {}).get("reason"), "exit_code": term.get("exitCode"),
            "created": (obj.get("metadata") or {}).get("creationTimestamp"), "started": term.get("startedAt"),
            "finished": term.get("finishedAt"), "output": logs[-1]["result"] if logs else None}


def _write_gz(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as fh:
        json.dump(doc, fh, separators=(",", ":"))


def _blobs(calls: list[dict[str, Any]], root: Path) -> None:
    """Long text answers (pod logs) move to recording/outputs/<sha256>.txt.gz: identical outputs (the same passing
    probe on every node of a type) are stored once."""
    for c in calls:
        result = c.get("result")
        if isinstance(result, str) and len(result) >= BLOB_MIN:
            digest = hashlib.sha256(result.encode()).hexdigest()
            path = root / FOLDER / "outputs" / f"{digest}.txt.gz"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as fh:
                    fh.write(result)
            c["result"] = {"$output": digest}


def write_recording(root: Path, recorder: Recorder, meta: dict[str, Any]) -> list[Path]:
    """recording/index.json.gz (run, options, profile, cluster-level calls), recording/nodes/<node>.json.gz (the
    probes of that node and their calls), recording/aws.json.gz, recording/outputs/ (outputs stored once)."""
    with recorder._lock:
        recorder.closed = True
        calls = sorted(recorder.calls, key=lambda c: c["seq"])
    pods = _pod_nodes(calls)
    last_seen: dict[str, dict[str, Any]] = {}
    for c in calls:
        for e in c.get("events") or []:
            obj = (e.get("event") or {}).get("object") or {}
            if obj.get("kind") in (None, "Pod") and (obj.get("metadata") or {}).get("name") in pods:
                last_seen[obj["metadata"]["name"]] = obj
    # the probe pods the run created and the job pods whose output it read (an MPIJob's launcher), not the
    # cluster's own pods it only listed
    created = {c["name"] for c in calls if c.get("verb") == "POST" and c.get("path", "").endswith("/pods")
               and c.get("name")}
    created |= {m["pod"] for c in calls if c.get("path", "").endswith("/log") and (m := _POD_PATH.search(c["path"]))}
    by_node: dict[str, list[dict[str, Any]]] = {}
    cluster_calls: list[dict[str, Any]] = []
    for c in calls:
        node = _node_of(c, pods)
        (by_node.setdefault(node, []) if node else cluster_calls).append(c)
    _blobs(calls, root)
    written = []
    node_files = {}
    for node, node_calls in sorted(by_node.items()):
        rel = f"{FOLDER}/nodes/{_UNSAFE.sub('_', node).strip('._') or 'node'}.json.gz"
        node_files[node] = rel
        probes = [probe_summary(pod, [c for c in node_calls if pod in (c.get("name"), (_POD_PATH.search(
            c.get("path", "")) or {"pod": None})["pod"])], last_seen.get(pod))
            for pod in sorted({p for p, n in pods.items() if n == node and p in created})]
        _write_gz(root / rel, {"schema_version": SCHEMA_VERSION, "node": node, "probes": probes, "calls": node_calls})
        written.append(root / rel)
    _write_gz(root / AWS_FILE, {"schema_version": SCHEMA_VERSION, "opens": recorder.aws_opens,
                                "calls": recorder.aws_calls})
    index = {"schema_version": SCHEMA_VERSION, "kind": "pytest-gpucluster-recording", **meta,
             "recorded": {"started": dt.datetime.fromtimestamp(recorder.started, dt.timezone.utc).isoformat(),
                          "start_epoch": recorder.started},
             "nodes": node_files, "aws": AWS_FILE, "calls": cluster_calls}
    _write_gz(root / INDEX, index)
    return [root / INDEX, root / AWS_FILE, *written]


def read_gz(path: Path) -> Any:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)
