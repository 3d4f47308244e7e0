"""SimCluster: starts one simulated cluster (store, API server, controllers, AWS) on its own event loop thread and writes its kubeconfig."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import importlib
import ipaddress
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, TypeVar

import yaml

from ..sim_contract.handoff import AwsSettings, write_handoff
from . import resources
from .rbac import Authorizer, load_authorizer
from .server import ApiServer, FaultConfig, ServerInfo
from .store import Store

T = TypeVar("T")
DEFAULT_RBAC_FILE = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
START_TIMEOUT = 30.0


class SimClusterError(RuntimeError):
    """The simulated cluster failed to start, or a controller failed while it ran."""


def make_tls(workdir: Path) -> tuple[ssl.SSLContext, bytes]:
    """A throw-away CA and a 127.0.0.1 server certificate it signs: kubectl sends bearer tokens only over
    TLS, so the sim serves https like a real apiserver. Returns the server context and the CA PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpucluster-sim-ca")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = workdir / "apiserver.crt", workdir / "apiserver.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, ca.public_bytes(serialization.Encoding.PEM)


def _optional(module: str, attr: str) -> Any | None:
    """A function from a sim module that another engineer may not have landed yet (None if absent)."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("pytest_gpucluster"):
            return None
        raise


class SimCluster:
    """One simulated EKS GPU cluster. `scenario` is a shipped name, a YAML path, a loaded Scenario, or
    None for an empty cluster (no seed, controllers or AWS: tests fill the store through `setup`)."""

    def __init__(self, scenario: str | Path | Any | None, *, port: int = 0, workdir: Path | None = None,
                 speed: float = 1.0, rbac: bool | Path | None = None,
                 setup: Callable[[Store], None] | None = None, controllers: bool = True,
                 aws: bool = True, bookmark_interval: float = 5.0, faults: FaultConfig | None = None) -> None:
        self._scenario_arg = scenario
        self.port = port
        self.speed = speed
        self._rbac_arg = rbac
        self._setup = setup
        self._want_controllers = controllers
        self._want_aws = aws
        self._bookmark_interval = bookmark_interval
        self._faults = faults
        self._extra_controllers: list[Any] = []
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gpucluster-sim-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path = self.workdir / "kubeconfig"
        self.server_url = ""
        self.aws_env: dict[str, str] = {}
        self.scenario: Any | None = None
        self.scenario_name = "empty"
        self.cluster_name = "gpucluster-sim"
        self.warnings: list[str] = []
        self.start_seconds = 0.0
        self.store: Store | None = None
        self.server: ApiServer | None = None
        self._token = secrets.token_urlsafe(32)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._errors: list[tuple[str, BaseException]] = []
        self._aws: Any | None = None
        self._ssl: ssl.SSLContext | None = None
        self._ca_pem = b""
        self._started = False

    # ----- start -------------------------------------------------------------------------------
    def start(self) -> "SimCluster":
        if self._started:
            return self
        t0 = time.perf_counter()
        try:
            self.scenario = self._load_scenario()
            authorizer = self._authorizer()
        except BaseException:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        if self.scenario is not None and self._want_aws:
            start_aws = _optional("pytest_gpucluster.sim.aws", "start_aws")
            if start_aws is not None:
                self._aws = start_aws(self.scenario)
                self.aws_env = dict(getattr(self._aws, "env", {}) or {})
        self._ssl, self._ca_pem = make_tls(self.workdir)
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run_loop, args=(ready, authorizer),
                                        name=f"gpucluster-sim-{self.scenario_name}", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=START_TIMEOUT)
        except BaseException:
            self._shutdown_loop()
            self._stop_aws()
            raise
        self._write_kubeconfig()
        self._started = True
        self.start_seconds = time.perf_counter() - t0
        return self

    def _load_scenario(self) -> Any | None:
        arg = self._scenario_arg
        if arg is None:
            return None
        if isinstance(arg, (str, Path)):
            from .scenario import load_scenario
            scenario = load_scenario(arg)
        else:
            scenario = arg
        self.scenario_name = str(getattr(scenario, "name", "") or Path(str(arg)).stem)
        cluster = getattr(scenario, "cluster", None)
        self.cluster_name = str(getattr(cluster, "name", "") or self.cluster_name)
        return scenario

    def _authorizer(self) -> Authorizer | None:
        rbac = self._rbac_arg
        if rbac is None and self.scenario is not None:
            rbac = bool(getattr(getattr(self.scenario, "rbac", None), "restrict", False))
        if not rbac:
            return None
        path = DEFAULT_RBAC_FILE if rbac is True else Path(rbac)
        if not path.exists():
            raise SimClusterError(f"RBAC restriction asked for but {path} does not exist; pass rbac=<path to "
                                  "an RBAC manifest> or write deploy/rbac.yaml")
        return load_authorizer(path)

    def _run_loop(self, ready: concurrent.futures.Future[None], authorizer: Authorizer | None) -> None:
        assert self._loop is not None  # noqa: S101 - set by start()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._boot(authorizer))
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, which re-raises it
            ready.set_exception(exc)
            self._loop.close()
            return
        ready.set_result(None)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _boot(self, authorizer: Authorizer | None) -> None:
        store = Store()
        self.store = store
        scenario = self.scenario
        if scenario is not None:
            seed = _optional("pytest_gpucluster.sim.seed", "seed_store")
            if seed is not None:
                seed(store, scenario, self._aws)
            else:
                self.warnings.append("sim.seed is not available: the cluster starts empty")
        if not store.crds():  # until seed_store installs the scenario's CRDs, serve all of them
            for key in resources.CUSTOM_KEYS:
                store.create("customresourcedefinitions.apiextensions.k8s.io", resources.crd_manifest(key))
        if self._setup is not None:
            self._setup(store)
        api = getattr(scenario, "api", None)
        cluster = getattr(scenario, "cluster", None)
        faults = self._faults or (FaultConfig.from_spec(api) if api is not None else None)
        self.server = ApiServer(store, self._token, authorizer=authorizer, faults=faults,
                                log_dir=self.workdir / "logs",
                                info=ServerInfo(str(getattr(cluster, "kubernetes_version", "1.32"))),
                                bookmark_interval=self._bookmark_interval)
        self.port = await self.server.start("127.0.0.1", self.port, ssl_context=self._ssl)
        self.server_url = f"https://127.0.0.1:{self.port}"
        for c in self._extra_controllers:
            self._run_controller(c)
        if scenario is not None and self._want_controllers:
            build = _optional("pytest_gpucluster.sim.controllers", "build_controllers")
            if build is None:
                self.warnings.append("sim.controllers is not available: no scheduler, kubelet or Karpenter")
                return
            try:
                controllers = build(store, scenario, self.workdir, self._aws)
            except ModuleNotFoundError as exc:
                if not (exc.name or "").startswith("pytest_gpucluster"):
                    raise
                self.warnings.append(f"controllers not started: {exc}")
                return
            for c in controllers:
                self._run_controller(c)

    def _run_controller(self, controller: Any) -> None:
        task = asyncio.get_running_loop().create_task(controller.run(), name=f"controller:{controller.name}")
        task.add_done_callback(self._record_failure)
        self._tasks.append(task)

    def add_controller(self, controller: Any) -> None:
        """Run one more controller (`name`, `async run()`) with the scenario's; call before start()."""
        if self._started:
            raise SimClusterError("add_controller() must be called before start()")
        self._extra_controllers.append(controller)

    def _record_failure(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._errors.append((task.get_name(), exc))

    def _write_kubeconfig(self) -> None:
        context = f"sim-{self.scenario_name}"
        user = "gpucluster-sim-user"
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": self.cluster_name, "cluster": {
                "server": self.server_url,
                "certificate-authority-data": base64.b64encode(self._ca_pem).decode()}}],
            "users": [{"name": user, "user": {"token": self._token}}],
            "contexts": [{"name": context, "context": {"cluster": self.cluster_name, "user": user,
                                                       "namespace": "default"}}],
            "current-context": context,
        }
        fd = os.open(self.kubeconfig_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(config, fh, sort_keys=False)

    def write_handoff(self, folder: Path) -> Path:
        """Write the hand-off folder the plugin reads (kubeconfig, AWS settings, the scenario's profile
        overlay, handoff.json last); returns the manifest's path. Call after start()."""
        if not self._started:
            raise SimClusterError("write_handoff() needs a started cluster")
        overlay = getattr(self.scenario, "profile", None) if self.scenario is not None else None
        return write_handoff(folder, scenario_name=self.scenario_name, server_url=self.server_url,
                             kubeconfig=self.kubeconfig_path.read_bytes(),
                             aws=AwsSettings.from_env(self.aws_env) if self.aws_env else None,
                             profile_overlay=overlay or None, warnings=self.warnings)

    # ----- running ------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(*args) on the cluster's loop (the only thread that may touch the store) and return its result."""
        if self._loop is None or not self._loop.is_running():
            raise SimClusterError("the simulated cluster is not running")

        async def run() -> T:
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stats(self) -> dict[str, Any]:
        """Request counts per verb+resource, their total, node count, faults injected."""
        def snapshot() -> dict[str, Any]:
            assert self.store is not None and self.server is not None  # noqa: S101 - running
            requests = dict(sorted(self.store.request_counts.items()))
            return {"requests": requests, "requests_total": sum(requests.values()),
                    "nodes": self.store.count("nodes"), "watches": self.store.watch_count(),
                    "faults": dict(self.server.fault_counts), "start_seconds": round(self.start_seconds, 3)}
        return self.call(snapshot)

    def errors(self) -> list[tuple[str, BaseException]]:
        return list(self._errors)

    # ----- stop ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop controllers, server, AWS; re-raise the first controller error recorded meanwhile."""
        if self._loop is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._teardown(), self._loop)
            try:
                fut.result(timeout=15)
            except concurrent.futures.TimeoutError:
                self.warnings.append("teardown of the simulated cluster timed out")
        self._shutdown_loop()
        self._stop_aws()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._started = False
        if self._errors:
            name, exc = self._errors[0]
            more = f" (and {len(self._errors) - 1} more)" if len(self._errors) > 1 else ""
            self._errors = []
            raise SimClusterError(f"simulated cluster {self.scenario_name!r}: {name} failed{more}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    async def _teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.server is not None:
            await self.server.stop()

    def _shutdown_loop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _stop_aws(self) -> None:
        if self._aws is not None:
            self._aws.stop()
            self._aws = None

    def __enter__(self) -> "SimCluster":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
