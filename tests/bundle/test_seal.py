"""The report folder's manifest (in-toto Statement v1), its DSSE signature and `gpucluster verify`, on folders a real
report plugin run wrote; the buyer's check with standard tools (sha256sum, jq, openssl) as docs/report.md prints it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_gpucluster.bundle.manifest import ENVELOPE, MANIFEST, PREDICATE_TYPE, STATEMENT_TYPE
from pytest_gpucluster.cli import main
from tests.report.conftest import run_suite  # noqa: F401  (the fixture)

SUITE = ("def test_ok(evidence):\n    evidence.measure('busbw', 350, 'GB/s', threshold=300)\n"
         "def test_two(evidence):\n    evidence.attach('out', 'hello')\n")


def openssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("keys")
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(d / "vendor.key"))
    openssl("pkey", "-in", str(d / "vendor.key"), "-pubout", "-out", str(d / "vendor.pub"))
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(d / "other.key"))
    openssl("pkey", "-in", str(d / "other.key"), "-pubout", "-out", str(d / "other.pub"))
    return d / "vendor.key", d / "vendor.pub"


def verify(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["verify", str(folder), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_unsigned_run_writes_a_statement_of_every_file_and_verifies(run_suite, capsys):  # noqa: F811
    run = run_suite(SUITE)
    assert run.result.ret == 0 and run.dir is not None
    doc = json.loads((run.dir / MANIFEST).read_text())
    assert doc["_type"] == STATEMENT_TYPE and doc["predicateType"] == PREDICATE_TYPE
    names = [s["name"] for s in doc["subject"]]
    on_disk = sorted(p.relative_to(run.dir).as_posix() for p in run.dir.rglob("*") if p.is_file())
    assert names == [n for n in on_disk if n != MANIFEST]       # every file, written last
    assert {"report.html", "summary.json", "junit.xml", "evidence/cluster.txt.gz"} <= set(names)
    summary = json.loads((run.dir / "summary.json").read_text())
    pred = doc["predicate"]
    assert (pred["verdict"], pred["run_id"], pred["signer"]) == ("ACCEPTED", summary["run_id"], None)
    assert pred["profile"] == {"path": summary["profile"]["path"], "sha256": summary["profile"]["sha256"]}
    assert pred["tool"]["name"] == "pytest-gpucluster" and "server_version" in pred["fingerprint"]
    assert "Evidence seal" in run.html and "Not signed" in run.html
    code, out = verify(run.dir, capsys)
    assert code == 0 and "not signed" in out and "ACCEPTED" in out


def test_verify_names_the_first_file_that_differs(run_suite, capsys):  # noqa: F811
    run = run_suite(SUITE)
    folder = run.dir
    assert folder is not None
    summary = folder / "summary.json"
    summary.write_text(summary.read_text().replace('"ACCEPTED"', '"NOT ACCEPTED"', 1))
    code, out = verify(folder, capsys)
    assert code == 1 and "summary.json: sha256 differs from the manifest" in out, out
    (folder / "evidence" / "extra.txt").write_text("planted")
    code, out = verify(folder, capsys)
    assert code == 1 and "evidence/extra.txt: in the folder but not in the manifest" in out   # sorted: first
    (folder / "evidence" / "extra.txt").unlink()
    (folder / "junit.xml").unlink()
    code, out = verify(folder, capsys)
    assert code == 1 and "junit.xml: listed in the manifest but missing" in out


def test_signed_run_verifies_with_the_vendor_key_and_not_another(run_suite, keys, capsys):  # noqa: F811
    key, pub = keys
    run = run_suite(SUITE, f"--gpucluster-sign={key}")
    assert run.result.ret == 0 and run.dir is not None
    fp = hashlib_fp(pub)
    assert (run.dir / ENVELOPE).exists() and f"sha256:{fp}" in run.html, run.result.outlines[-12:] + run.result.errlines[-12:]
    run.result.stdout.fnmatch_lines([f"sealed:  *{MANIFEST}, signed by sha256:{fp}"])
    envelope = json.loads((run.dir / ENVELOPE).read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert [s["keyid"] for s in envelope["signatures"]] == [fp]
    code, out = verify(run.dir, capsys, "--key", str(pub))
    assert code == 0 and f"signed by the given key sha256:{fp}" in out
    code, out = verify(run.dir, capsys)
    assert code == 0 and "pass --key" in out
    code, out = verify(run.dir, capsys, "--key", str(pub.with_name("other.pub")))
    assert code == 1 and "no valid signature by key" in out
    # a manifest rewritten to match an edited file does not match the signed statement
    (run.dir / "report.html").write_text("edited")
    doc = json.loads((run.dir / MANIFEST).read_text())
    for s in doc["subject"]:
        if s["name"] == "report.html":
            s["digest"]["sha256"] = hashlib_sha("edited")
    (run.dir / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    code, out = verify(run.dir, capsys, "--key", str(pub))
    assert code == 1 and f"{MANIFEST} differs from the signed statement" in out


def test_unsigned_folder_with_a_key_asked_is_not_verified(run_suite, keys, capsys):  # noqa: F811
    run = run_suite(SUITE)
    code, out = verify(run.dir, capsys, "--key", str(keys[1]))
    assert code == 1 and f"{ENVELOPE} is missing: the folder is not signed" in out


def test_bad_key_is_one_usage_error(run_suite, tmp_path):  # noqa: F811
    (tmp_path / "rsa.key").write_text("not a key")
    run = run_suite(SUITE, f"--gpucluster-sign={tmp_path / 'rsa.key'}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines(["*--gpucluster-sign must be an Ed25519 private key in PEM*openssl genpkey*"])


def test_standard_tools_check_files_and_signature(run_suite, keys):  # noqa: F811
    """The buyer's check of docs/report.md without pytest-gpucluster: sha256sum over the subjects, then the DSSE
    pre-authentication encoding verified by openssl."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    key, pub = keys
    run = run_suite(SUITE, f"--gpucluster-sign={key}")
    script = (Path(__file__).resolve().parents[2] / "docs" / "verify-with-openssl.sh").read_text()
    done = subprocess.run(["bash", "-c", script, "verify", str(run.dir), str(pub)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout and ": OK" in done.stdout
    (run.dir / "junit.xml").write_text("edited")
    done = subprocess.run(["bash", "-c", script, "verify", str(run.dir), str(pub)], capture_output=True, text=True)
    assert done.returncode != 0 and "junit.xml: FAILED" in done.stdout


def hashlib_fp(pub: Path) -> str:
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"], capture_output=True,
                         check=True).stdout
    import hashlib
    return hashlib.sha256(der).hexdigest()


def hashlib_sha(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()
