"""`--gpucluster-upload s3://bucket/prefix`: the report folder lands in S3 (a moto server), failures are loud."""
from __future__ import annotations

from typing import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

SUITE = "def test_ok(evidence):\n    evidence.measure('busbw', 350, 'GB/s', threshold=300)\n"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[object]:
    """A moto S3 server on loopback, with boto3's env chain pointed at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket="gpu-reports")
    try:
        yield client
    finally:
        server.stop()


def test_report_folder_is_uploaded_after_the_run(run_suite, s3):
    run = run_suite(SUITE, "--gpucluster-upload", "s3://gpu-reports/nightly/prod")
    assert run.result.ret == 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="gpu-reports")["Contents"]}
    base = f"nightly/prod/{run.dir.name}"
    assert {f"{base}/report.html", f"{base}/summary.json", f"{base}/junit.xml", f"{base}/evidence/cluster.txt.gz"} <= keys
    body = s3.get_object(Bucket="gpu-reports", Key=f"{base}/report.html")["Body"].read().decode()
    assert "GPU cluster acceptance: ACCEPTED" in body  # uploaded after pytest-html wrote the final file
    run.result.stdout.fnmatch_lines([f"uploaded 5 file(s) to s3://gpu-reports/nightly/prod/{run.dir.name}/"])


def test_failed_upload_is_reported_and_fails_the_run(run_suite, s3):
    run = run_suite(SUITE, "--gpucluster-upload", "s3://no-such-bucket/x")
    run.result.stdout.fnmatch_lines(["*ERROR: upload of * to s3://no-such-bucket/x failed: *NoSuchBucket*"
                                     "the report is still on local disk"])
    assert run.result.ret == pytest.ExitCode.INTERNAL_ERROR
    assert (run.dir / "report.html").exists()


def test_bad_upload_url_is_a_usage_error(run_suite):
    run = run_suite(SUITE, "--gpucluster-upload", "https://bucket/x")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines(["*--gpucluster-upload must look like s3://bucket/prefix, given: 'https://bucket/x'"])
