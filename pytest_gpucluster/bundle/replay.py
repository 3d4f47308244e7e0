"""Replaying a recording at the kube/ and aws/ boundary: the same gather code asks the same questions, and each gets
the recorded answer instead of the server's. Nothing new can be measured: a question the recording cannot answer
raises NotRecorded, and the check that asked is reported not shown (plugin.py), never passed.

Time is the recording's: a virtual clock stands in for time.time/monotonic/sleep in the replaying process, moved to
the moment each answer arrived in the recorded run, so deadlines, grace periods and the Karpenter timeline judge
the same waits they judged then; a watch the recording has no more of is the recorded silence until its window
ends."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from ..aws import errors as aws_errors
from ..aws.session import AwsSession, ClusterTarget
from ..kube import errors as kube_errors
from ..kube.client import Cluster
from ..report.redact import redact_obj
from .recording import (AWS_FILE, FOLDER, INDEX, SCHEMA_VERSION, call_key, from_json, read_gz, thread_role,
                        to_json)


class RecordingError(ValueError):
    """A folder without a usable recording (missing, unreadable, newer schema)."""


class NotRecorded(Exception):
    """The recording has no answer to this request: the evidence it would have given is not in the bundle."""


@dataclass
class Recording:
    root: Path
    index: dict[str, Any]
    calls: list[dict[str, Any]]
    aws: dict[str, Any]

    @classmethod
    def load(cls, report_dir: str | Path) -> Recording:
        root = Path(report_dir)
        if not (root / INDEX).exists():
            raise RecordingError(f"{root}: no {INDEX}: not a report folder, or written by a run that did not record "
                                 "(pytest-gpucluster older than the bundle, or a distributed -n run)")
        try:
            index = read_gz(root / INDEX)
            calls = list(index.get("calls") or [])
            for rel in (index.get("nodes") or {}).values():
                calls += read_gz(root / rel).get("calls") or []
            aws = read_gz(root / (index.get("aws") or AWS_FILE)) if (root / (index.get("aws") or AWS_FILE)).exists() \
                else {}
        except (OSError, ValueError) as exc:
            raise RecordingError(f"{root}/{FOLDER}: cannot be read ({exc})") from exc
        if int(index.get("schema_version", 0)) > SCHEMA_VERSION:
            raise RecordingError(f"{root}: recording schema_version {index['schema_version']} is newer than this tool "
                                 f"reads ({SCHEMA_VERSION}); upgrade pytest-gpucluster")
        return cls(root, index, sorted(calls, key=lambda c: c["seq"]), aws)

    def output(self, ref: Any) -> Any:
        if isinstance(ref, dict) and set(ref) == {"$output"}:
            path = self.root / FOLDER / "outputs" / f"{ref['$output']}.txt.gz"
            import gzip
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read()
        return ref


@dataclass
class VirtualClock:
    """time.time / time.monotonic / time.sleep of the replaying process, at the recording's pace."""

    start_epoch: float
    elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saved: tuple[Any, Any, Any] | None = None

    def at(self, t: float) -> None:
        with self._lock:
            self.elapsed = max(self.elapsed, float(t))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.elapsed += max(0.0, float(seconds))

    def time(self) -> float:
        return self.start_epoch + self.elapsed

    def monotonic(self) -> float:
        return 1_000_000.0 + self.elapsed

    def install(self) -> None:
        if self._saved is None:
            self._saved = (time.time, time.monotonic, time.sleep)
            time.time, time.monotonic, time.sleep = self.time, self.monotonic, self.advance  # type: ignore[assignment]

    def uninstall(self) -> None:
        if self._saved is not None:
            time.time, time.monotonic, time.sleep = self._saved
            self._saved = None


def _kube_error(data: dict[str, Any], site: Any) -> BaseException:
    cls = getattr(kube_errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, kube_errors.ClusterError)):
        cls = kube_errors.Unreachable if data.get("type") in ("OSError", "ConnectionError", "TimeoutError") \
            else kube_errors.ClusterError
    return cls(str(data.get("message")), site=site, status=data.get("status"), reason=data.get("reason"),
               retry_after=data.get("retry_after"))


def _aws_error(data: dict[str, Any]) -> BaseException:
    name = str(data.get("type"))
    if name == "AwsCallFailed":
        return aws_errors.AwsCallFailed(str(data.get("operation")), str(data.get("code")), str(data.get("detail", "")),
                                        unreachable=bool(data.get("unreachable")))
    cls = getattr(aws_errors, name, None)
    if isinstance(cls, type) and issubclass(cls, aws_errors.AwsUnavailable):
        return cls(str(data.get("reason") or data.get("message")))
    return aws_errors.AwsCallFailed("aws", name, str(data.get("message")))


class Replay:
    """The tap that answers from a recording (Cluster.tap and aws.session.TAP of the replaying process)."""

    def __init__(self, recording: Recording, clock: VirtualClock) -> None:
        self.recording, self.clock = recording, clock
        self.queues: dict[str, deque[dict[str, Any]]] = {}
        for c in recording.calls:
            key = call_key(c["verb"], c["path"], c.get("query") or {}, c.get("name"), c.get("thread", ""))
            self.queues.setdefault(key, deque()).append(c)
        self.aws_opens = deque(recording.aws.get("opens") or [])
        self.aws_calls: dict[str, deque[dict[str, Any]]] = {}
        for c in recording.aws.get("calls") or []:
            self.aws_calls.setdefault(self._aws_key(c["service"], c["operation"], c.get("params") or {}),
                                      deque()).append(c)
        self.missing: list[str] = []
        self._lock = threading.Lock()

    def _pop(self, key: str, what: str) -> dict[str, Any]:
        with self._lock:
            queue = self.queues.get(key)
            if queue:
                return queue.popleft()
            self.missing.append(what)
        raise NotRecorded(f"the recording has no answer to {what}")

    def _arrive(self, t: float) -> None:
        """Move the clock to an answer's time (suites marked live_only, whose threads beside the main flow would race
        for it, are not replayed: bundle/plugin.py)."""
        self.clock.at(t)

    # -- kube ----------------------------------------------------------------------------------------
    def request(self, method: str, path: str, query: dict[str, Any], body: Any, site: Any,
                send: Callable[[], Any]) -> Any:
        name = (body.get("metadata") or {}).get("name") if method == "POST" and isinstance(body, dict) else None
        call = self._pop(call_key(method, path, query, name, thread_role()),
                         f"{method} {path}{' ' + name if name else ''}")
        self._arrive(call.get("t", 0.0))
        if "error" in call:
            raise _kube_error(call["error"], site)
        return self.recording.output(call.get("result"))

    def watch(self, path: str, query: dict[str, Any], timeout_s: int,
              open_watch: Callable[[], Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        role = thread_role()
        key = call_key("WATCH", path, query, None, role)
        with self._lock:
            queue = self.queues.get(key)
            call = queue.popleft() if queue else None
        if call is None:
            self.clock.advance(timeout_s)     # nothing more happened on this watch: the window passes in silence
            return
        self._arrive(call.get("t", 0.0))
        for entry in call.get("events") or []:
            self._arrive(entry.get("t", 0.0))
            yield entry["event"]
        if "error" in call:
            raise _kube_error(call["error"], None)
        self._arrive(call.get("t_end", 0.0))

    # -- aws -----------------------------------------------------------------------------------------
    @staticmethod
    def _aws_key(service: str, operation: str, params: dict[str, Any]) -> str:
        import json
        return json.dumps([service, operation, params], sort_keys=True, separators=(",", ":"))

    def open_session(self, open_: Callable[[], Any]) -> AwsSession:
        with self._lock:
            opened = self.aws_opens.popleft() if self.aws_opens else None
        if opened is None:
            self.missing.append("an AWS session")
            raise NotRecorded("the recording has no AWS session (the recorded run opened none here)")
        self.clock.at(opened.get("t", 0.0))
        if "error" in opened:
            raise _aws_error(opened["error"])
        result = opened["result"]
        target = ClusterTarget(result["target"].get("cluster_name"), result["target"].get("region"))
        return AwsSession(None, result["region"], None, target, result.get("account_id"))

    def aws_call(self, service: str, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        key = self._aws_key(service, operation, redact_obj(to_json(params)))
        with self._lock:
            queue = self.aws_calls.get(key)
            recorded = queue.popleft() if queue else None
        if recorded is None:
            self.missing.append(f"AWS {service}:{operation}")
            raise NotRecorded(f"the recording has no answer to AWS {service}:{operation} {params}")
        self.clock.at(recorded.get("t", 0.0))
        if "error" in recorded:
            raise _aws_error(recorded["error"])
        return from_json(recorded.get("result"))

    # -- the cluster the Session connects to -------------------------------------------------------------
    def cluster(self) -> ReplayCluster:
        return ReplayCluster(self)


class ReplayCluster(Cluster):
    """A Cluster whose every request goes to the recording (Cluster.tap); no server, no credentials."""

    def __init__(self, replay: Replay) -> None:      # deliberately not Cluster.__init__: nothing to connect to
        index = replay.recording.index
        self.creds = SimpleNamespace(paths=[], server=f"recording:{index.get('run_id')}", context=None)  # type: ignore[assignment]
        self.server_url = str(self.creds.server)
        self.context = None
        self.timeouts = (0.0, 0.0)
        self.api = None
        self.request_count = 0
        self.tap = replay
        self._version = dict(index.get("server") or {})

    def version(self) -> dict[str, Any]:
        return dict(self._version)

    def close(self) -> None:
        return None

    def write_kubeconfig(self, dest: Path) -> Path:
        """kubectl-based checks (pytest-kubernetes' `k8s`) are outside the recording: a kubeconfig that reaches
        nothing, and plugin.py reports those checks not shown."""
        dest.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
        return dest
