"""Report upload: a folder round-trips through S3 (moto on loopback); bad destinations fail clearly."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_gpucluster.aws.errors import AwsCallFailed
from pytest_gpucluster.aws.s3 import S3UrlError, parse_s3_url, upload_folder
from pytest_gpucluster.sim.aws import AwsSim


def _report(tmp_path: Path) -> Path:
    folder = tmp_path / "20261123-160000-ab12"
    (folder / "plots").mkdir(parents=True)
    (folder / "report.html").write_text("<html>ok</html>")
    (folder / "summary.json").write_text('{"verdict": "ACCEPTED"}')
    (folder / "plots" / "nccl.svg").write_text("<svg/>")
    return folder


def test_upload_round_trip(healthy: AwsSim, tmp_path: Path) -> None:
    s3 = healthy.client("s3")
    s3.create_bucket(Bucket="gpucluster-reports", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    urls = upload_folder(_report(tmp_path), "s3://gpucluster-reports/acceptance/", env=healthy.env)
    base = "s3://gpucluster-reports/acceptance/20261123-160000-ab12"
    assert urls == [f"{base}/plots/nccl.svg", f"{base}/report.html", f"{base}/summary.json"]
    obj = s3.get_object(Bucket="gpucluster-reports", Key="acceptance/20261123-160000-ab12/summary.json")
    assert obj["Body"].read() == b'{"verdict": "ACCEPTED"}' and obj["ContentType"] == "application/json"
    html = s3.head_object(Bucket="gpucluster-reports", Key="acceptance/20261123-160000-ab12/report.html")
    assert html["ContentType"] == "text/html"


def test_upload_to_missing_bucket_names_the_object(healthy: AwsSim, tmp_path: Path) -> None:
    with pytest.raises(AwsCallFailed, match=r"s3:PutObject s3://no-such-bucket/.* failed: NoSuchBucket"):
        upload_folder(_report(tmp_path), "s3://no-such-bucket", env=healthy.env)


@pytest.mark.parametrize("url", ["https://bucket/x", "s3://", "s3://UPPER/x", "bucket/prefix"])
def test_bad_destination(url: str) -> None:
    with pytest.raises(S3UrlError, match="must look like s3://bucket/prefix"):
        parse_s3_url(url)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="report folder to upload does not exist"):
        upload_folder(tmp_path / "nope", "s3://bucket/prefix")
