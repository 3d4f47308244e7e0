"""Redaction: every kind of secret a cluster run can print, and the text around it left intact."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gpucluster.report.redact import MASK, redact, redact_all_rules, redact_obj

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0.c2lnbmF0dXJlLWJ5dGVz"
PEM = "-----BEGIN CERTIFICATE-----\nMIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl\n-----END CERTIFICATE-----"


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"),
    (f"token: {JWT}", JWT),
    (f"found {JWT} in env", JWT),
    ("    client-key-data: LS0tLS1CRUdJTiBSU0Eg", "LS0tLS1CRUdJTiBSU0Eg"),
    ("    client-certificate-data: LS0tLS1CRUdJTiBDRVJU", "LS0tLS1CRUdJTiBDRVJU"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("key ASIAY34FZKBOKMUTVV7A in use", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY alone", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ('{"SessionToken": "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLXdlc3QtMiJHMEUCIQD"}', "IQoJb3JpZ2luX2VjEJr"),
    ("AWS_SESSION_TOKEN=FwoGZXIvYXdzEBYaDHhAbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "FwoGZXIvYXdzEBYaDH"),
    ("kubectl --token=s3cr3t-t0k3n get nodes", "s3cr3t-t0k3n"),
    (PEM, "MIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl"),
])
def test_secret_is_masked(text, secret):
    out = redact(text)
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize("text", [
    "NCCL INFO NET/OFI Selected Provider is efa",
    "| NVIDIA-SMI 580.105.08   Driver Version: 580.105.08   CUDA Version: 13.0 |",
    "commit 32d526a4b0c7e1f2a3b4c5d6e7f8091a2b3c4d5e",            # 40 hex: a git SHA, not a secret key
    "GPU-00000000-0000-0000-0000-000000000001",
    "secretName: aws-creds",                                      # names of secrets are fine
    "tokens processed: 12",
    "AWS_SECRET_ACCESS_KEY: $(AWS_SECRET_ACCESS_KEY)",            # a reference, not a value
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
])
def test_ordinary_text_is_untouched(text):
    assert redact(text) == text


def test_masking_is_idempotent():
    once = redact("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE token: abc")
    assert redact(once) == once == f"AWS_ACCESS_KEY_ID={MASK} token: {MASK}"


def test_redact_obj_walks_json_and_masks_secret_keys():
    doc = {"env": {"AWS_SECRET_ACCESS_KEY": "short", "PATH": "/usr/bin"},
           "lines": ["Bearer abcdefghijklmnop"], "n": 3}
    out = redact_obj(doc)
    assert out == {"env": {"AWS_SECRET_ACCESS_KEY": MASK, "PATH": "/usr/bin"},
                   "lines": [f"Bearer {MASK}"], "n": 3}


_PIECES = [JWT, PEM, "Bearer abcdef0123456789abcdef", "basic QWxhZGRpbjpvcGVu", "--token=s3cr3t", "--password abc",
           "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjEJr" + "A" * 40,
           "FwoGZXIvYXdzE" + "b" * 41, "aws_session_token=xyz", "SessionToken: 'q'", "api-key: k", "paſſword=1",
           "ıd_token: t", "client-key-data: LS0t", "32d526a4b0c7e1f2a3b4c5d6e7f8091a2b3c4d5e", "GPU 0: NVIDIA H100",
           "tokens processed: 12", " ", "\n", ":", "=", "\"", "-----BEGIN ", "eyJ", "Secret", "TOKEN"]


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=12))
@settings(max_examples=300, deadline=None)
def test_fast_redact_equals_every_rule_over_the_whole_text(parts):
    """redact() skips a rule whose needed substring is absent; it must give exactly what every rule gives."""
    text = "".join(parts)
    assert redact(text) == redact_all_rules(text)
