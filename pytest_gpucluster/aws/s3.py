"""Upload of a report folder to S3 (`--gpucluster-upload s3://bucket/prefix`), with the shared retry policy."""
from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Mapping

from .. import retry
from ..options import S3_URL
from .errors import AwsCallFailed
from .session import AwsSession, open_session


class S3UrlError(ValueError):
    """The upload destination is not `s3://bucket[/prefix]`."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix"); raises S3UrlError with the expected form."""
    match = S3_URL.match(url.strip())
    if not match:
        raise S3UrlError(f"S3 destination must look like s3://bucket/prefix, given: {url!r}")
    return match["bucket"], (match["prefix"] or "").strip("/")


def upload_folder(folder: str | os.PathLike[str], s3_url: str, *, session: AwsSession | None = None,
                  env: Mapping[str, str] | None = None) -> list[str]:
    """Upload every file under `folder` to `s3_url/<folder name>/...`; returns the s3:// URLs written.

    Uses boto3's standard credential chain unless a session (or an env such as the simulated
    cluster's aws_env) is given. Raises S3UrlError, NoCredentials / AwsUnavailable (nothing to
    upload with) or AwsCallFailed (which object, which error) - never half silently.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"report folder to upload does not exist: {root}")
    bucket, prefix = parse_s3_url(s3_url)
    session = session or open_session(env=env, verify=False)
    base = "/".join(p for p in (prefix, root.name) if p)
    uploaded = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"{base}/{path.relative_to(root).as_posix()}"
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body = path.read_bytes()
        try:
            # same key, same bytes: repeating the PUT is harmless, so the write policy may retry it
            session.call("s3", "put_object", _policy=retry.AWS_WRITE, Bucket=bucket, Key=key, Body=body,
                         ContentType=content_type)
        except AwsCallFailed as exc:
            raise AwsCallFailed(f"s3:PutObject s3://{bucket}/{key}", exc.code, exc.message) from exc
        uploaded.append(f"s3://{bucket}/{key}")
    return uploaded
