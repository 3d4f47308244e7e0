"""deploy/: manifests valid against the Kubernetes schemas, wired to rbac.yaml, and accepted by a (simulated) API server."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is a test extra")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = ["namespace.yaml", "rbac.yaml", "cronjob.yaml"]
# EKS standard support covers the three latest minors; kubernetes-validate ships offline schemas for them.
K8S_VERSIONS = ["1.34.0", "1.35.0"]


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def all_documents() -> list[dict[str, Any]]:
    return [d for name in MANIFESTS for d in documents(name)]


def find(kind: str) -> dict[str, Any]:
    matches = [d for d in all_documents() if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind} in {MANIFESTS}, found {len(matches)}"
    return matches[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_for_kubernetes(name: str, version: str) -> None:
    docs = documents(name)
    assert docs, f"{name} has no documents"
    for doc in docs:
        # strict: unknown fields (typos such as `serviceAcountName`) are errors too
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_typo() -> None:
    cron = copy.deepcopy(find("CronJob"))
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod["serviceAcountName"] = pod.pop("serviceAccountName")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, K8S_VERSIONS[-1], strict=True)


def test_cronjob_runs_as_the_rbac_service_account_in_its_namespace() -> None:
    cron, sa, binding, ns = find("CronJob"), find("ServiceAccount"), find("ClusterRoleBinding"), find("Namespace")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert cron["metadata"]["namespace"] == sa["metadata"]["namespace"] == ns["metadata"]["name"]
    assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]} in binding["subjects"]


def test_cronjob_runs_the_suites_and_uploads_without_overlap() -> None:
    cron = find("CronJob")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > 0 and job["ttlSecondsAfterFinished"] > 0
    container = job["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert re.match(r"^s3://[a-z0-9.\-]+/", env["GPUCLUSTER_UPLOAD"])
    assert "--gpucluster-upload=$(GPUCLUSTER_UPLOAD)" in container["args"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/reports" in mounts and "--gpucluster-report-dir=/reports" in container["args"]
    # restricted Pod Security (namespace.yaml enforces it)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert job["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_dockerfile_installs_the_package_and_runs_gpucluster() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert 'ENTRYPOINT ["gpucluster", "run"]' in text
    cron_user = find("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert re.search(rf"^USER {cron_user}\b", text, re.M)
    for src in re.findall(r"^COPY (\S+)", text, re.M):
        assert (DEPLOY.parent / src).exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_ci_workflow_runs_with_a_kubeconfig_secret_and_gates_on_compare() -> None:
    wf = yaml.safe_load((DEPLOY / "github-actions-nightly.yaml").read_text())
    steps = wf["jobs"]["acceptance"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "secrets.GPUCLUSTER_KUBECONFIG" in yaml.safe_dump(steps)
    assert re.search(r"gpucluster run --kubeconfig \S+", runs)
    assert "gpucluster compare previous/summary.json reports/*/summary.json" in runs
    assert True in wf or "on" in wf  # PyYAML reads the bare `on:` key as True
    triggers = wf.get("on", wf.get(True))
    assert "schedule" in triggers


# --- applied to the simulated cluster ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    launcher = pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available")
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    sim = launcher.SimCluster(None, workdir=tmp_path_factory.mktemp("sim"))
    sim.start()
    try:
        yield sim.kubeconfig_path
    finally:
        sim.stop()


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if args[0] == "apply":  # the simulator serves no OpenAPI documents; schemas are checked above
        args = (*args, "--validate=false")
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def job_from_cronjob(cron: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl create job --from=cronjob/...` makes: the jobTemplate as a Job."""
    template = cron["spec"]["jobTemplate"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{cron['metadata']['name']}-manual", "namespace": cron["metadata"]["namespace"],
                         "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def test_manifests_apply_to_the_simulated_cluster(sim_kubeconfig: Path) -> None:
    for name in ("namespace.yaml", "rbac.yaml"):
        done = kubectl(sim_kubeconfig, "apply", "-f", str(DEPLOY / name))
        assert done.returncode == 0, f"kubectl apply -f deploy/{name}: {done.stderr}"
    cron = find("CronJob")
    done = kubectl(sim_kubeconfig, "apply", "-f", str(DEPLOY / "cronjob.yaml"))
    created = "cronjob/gpucluster-nightly"
    if done.returncode != 0 and "no matches for kind \"CronJob\"" in done.stderr:
        # the simulator does not serve batch/v1 CronJobs; apply what the CronJob would create each night
        done = kubectl(sim_kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(job_from_cronjob(cron)))
        created = "job.batch/gpucluster-nightly-manual"
    assert done.returncode == 0, done.stderr
    got = kubectl(sim_kubeconfig, "-n", "gpucluster", "get", created, "-o", "name")
    assert got.stdout.strip() == created, got.stderr
    sa = kubectl(sim_kubeconfig, "-n", "gpucluster", "get", "serviceaccount", "gpucluster", "-o", "name")
    assert sa.stdout.strip() == "serviceaccount/gpucluster", sa.stderr
