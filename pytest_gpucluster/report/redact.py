"""Secret redaction for everything a report shows: tokens, certificates/keys, AWS credentials."""
from __future__ import annotations

import re
from typing import Any, Callable

MASK = "[REDACTED]"

# PEM blocks: certificates, private keys (RSA/EC/OPENSSH/...), CSRs.
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?(?:-----END \1-----|\Z)", re.DOTALL)

# `key: value` / `key=value` / `"key": "value"` where the key names a secret.
_SECRET_KEYS = (
    r"client-key-data|client-certificate-data|certificate-authority-data|"
    r"aws_secret_access_key|aws_session_token|aws_security_token|aws_access_key_id|"
    r"secret[_-]?access[_-]?key|session[_-]?token|secretaccesskey|sessiontoken|"
    r"id[_-]?token|refresh[_-]?token|access[_-]?token|token|password|passwd|secret|api[_-]?key"
)
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?\b(?:" + _SECRET_KEYS + r")\b[\"']?)(?P<sep>[ \t]*[:=][ \t]*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;}\]\"']+)",
    re.IGNORECASE,
)
# HTTP Authorization headers and `--token` flags.
_BEARER = re.compile(r"(?P<pre>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_TOKEN_FLAG = re.compile(r"(?P<pre>--(?:token|password)[= ]\s*)\S+")
# JSON Web Tokens (service-account tokens, OIDC id tokens), wherever they appear.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
# AWS access key ids (long-term AKIA, temporary ASIA, and other IAM unique id prefixes).
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b")
# AWS secret access keys: 40 chars of base64 alphabet with mixed case and a digit
# (git SHAs are lowercase hex, so they survive).
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])"
                         r"(?=[A-Za-z0-9/+]*[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# STS session tokens start with these base64 prefixes and are hundreds of characters long.
_AWS_SESSION = re.compile(r"\b(?:FwoGZXIvYXdzE|IQoJb3JpZ2luX2Vj|IQoJb3JpZ2lu)[A-Za-z0-9/+=]{40,}")


def _mask_value(m: re.Match[str]) -> str:
    value = m.group("value")
    if value.startswith(("\"", "'")):
        quote = value[0]
        return f"{m.group('key')}{m.group('sep')}{quote}{MASK}{quote}"
    if value.startswith(MASK[:-1]) or value in ("|", ">", "null", "~", "") or value.startswith("$"):
        return m.group(0)  # already masked, a YAML block indicator, empty, or an env reference
    return f"{m.group('key')}{m.group('sep')}{MASK}"


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str]] = [
    (_PEM, lambda m: f"-----BEGIN {m.group(1)}----- {MASK} -----END {m.group(1)}-----"),
    (_JWT, MASK),
    (_BEARER, lambda m: m.group("pre") + MASK),
    (_TOKEN_FLAG, lambda m: m.group("pre") + MASK),
    (_AWS_SESSION, MASK),
    (_AWS_KEY_ID, MASK),
    (_AWS_SECRET, MASK),
    (_KEY_VALUE, _mask_value),
]

# What a text must contain for each rule to match at all (substrings of every match; `lower` for the case-insensitive
# rules): checked in C before the rule's regex scans the text. Redaction was 40% of the report plugin's CPU on
# nvidia-smi and NCCL outputs, which hold none of these.
_RUN_40 = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])")   # a run of exactly 40 (_AWS_SECRET)
_KEY_WORDS = ("key-data", "certificate-data", "authority-data", "aws_", "secret", "token", "passw", "api_key",
              "api-key", "apikey")      # every _SECRET_KEYS alternative holds one
_NEEDED: dict[re.Pattern[str], Callable[[str, str], bool]] = {
    _PEM: lambda t, low: "-----BEGIN " in t,
    _JWT: lambda t, low: "eyJ" in t,
    _BEARER: lambda t, low: "bearer" in low or "basic" in low,
    _TOKEN_FLAG: lambda t, low: "--token" in t or "--password" in t,
    _AWS_SESSION: lambda t, low: "FwoGZXIvYXdzE" in t or "IQoJb3JpZ2lu" in t,
    _AWS_KEY_ID: lambda t, low: any(p in t for p in ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA",
                                                       "APKA")),
    _AWS_SECRET: lambda t, low: _RUN_40.search(t) is not None,
    _KEY_VALUE: lambda t, low: any(w in low for w in _KEY_WORDS),
}


def redact_all_rules(text: str) -> str:
    """Every rule over the whole text: what redact() must equal (tests compare them)."""
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


def redact(text: str) -> str:
    """Return `text` with secrets replaced by `[REDACTED]`; other text is left byte-for-byte."""
    if not text:
        return text
    lower: str | None = None
    for pattern, repl in _RULES:
        if lower is None:    # re.IGNORECASE also matches i and s to the dotless i and the long s
            lower = text.lower().replace("\u0131", "i").replace("\u017f", "s")
        if not _NEEDED[pattern](text, lower):
            continue
        new = pattern.sub(repl, text)
        if new != text:
            text, lower = new, None
    return text


def redact_obj(obj: Any) -> Any:
    """Redact every string (and string-valued secret keys) in a JSON-like structure."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and isinstance(v, str) and re.fullmatch(_SECRET_KEYS, k, re.IGNORECASE) and v:
                out[k] = MASK
            else:
                out[k] = redact_obj(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj
