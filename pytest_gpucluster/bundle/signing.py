"""Signing the manifest: a DSSE envelope (https://github.com/secure-systems-lab/dsse) made and checked by
securesystemslib, with an Ed25519 key in PEM (`openssl genpkey -algorithm ed25519`). The `sign` extra
(`pip install 'pytest-gpucluster[sign]'`) brings securesystemslib; a run that does not sign needs none of it.

The key's fingerprint is the sha256 of its public key in DER (SubjectPublicKeyInfo), the same a buyer gets with
`openssl pkey -pubin -in vendor.pub -outform DER | sha256sum`; it is the envelope signature's keyid."""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manifest import PAYLOAD_TYPE

EXTRA = "sign"
PASSWORD_ENV = "GPUCLUSTER_SIGN_KEY_PASSWORD"     # for an encrypted private key; never logged


class SigningError(ValueError):
    """A key or signature that cannot be used, said with what was expected and the fix."""


def _sslib() -> Any:
    try:
        import securesystemslib.dsse
        import securesystemslib.exceptions
        import securesystemslib.signer
    except ImportError as exc:
        raise SigningError(f"signing and checking signatures need securesystemslib: pip install "
                           f"'pytest-gpucluster[{EXTRA}]' ({exc})") from exc
    return securesystemslib


def _serialization() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:
        raise SigningError(f"Ed25519 keys need cryptography: pip install 'pytest-gpucluster[{EXTRA}]'") from exc
    return serialization


def fingerprint(public_key: Any) -> str:
    ser = _serialization()
    der = public_key.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_pem(public_key: Any) -> str:
    ser = _serialization()
    return str(public_key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo).decode("ascii"))


@dataclass
class Signer:
    """An Ed25519 private key loaded from a PEM file, ready to sign the manifest."""

    path: str
    private_key: Any

    @property
    def keyid(self) -> str:
        return fingerprint(self.private_key.public_key())

    def identity(self) -> dict[str, str]:
        """What the manifest says about its signer (the public half only)."""
        return {"keyid": self.keyid, "public_key": public_pem(self.private_key.public_key()),
                "algorithm": "ed25519"}

    def sign(self, payload: bytes) -> dict[str, Any]:
        """The DSSE envelope of `payload` (an in-toto Statement), as JSON-able dict."""
        sslib = _sslib()
        key = sslib.signer.SSlibKey.from_crypto(self.private_key.public_key(), keyid=self.keyid)
        signer = sslib.signer.CryptoSigner(self.private_key, key)
        envelope = sslib.dsse.Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
        envelope.sign(signer)
        doc: dict[str, Any] = envelope.to_dict()
        return doc


def load_signer(path: str | os.PathLike[str], flag: str = "--gpucluster-sign") -> Signer:
    """Read an Ed25519 private key (PEM, PKCS#8; encrypted ones take the password from $GPUCLUSTER_SIGN_KEY_PASSWORD)."""
    _sslib()
    ser = _serialization()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"{flag} must be a readable Ed25519 private key file (PEM), given {path}: "
                           f"{exc.strerror}") from exc
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = ser.load_pem_private_key(data, password=password.encode() if password else None)
    except TypeError as exc:      # encrypted without a password, or a password for a plain key
        raise SigningError(f"{flag} {path}: {exc}; set ${PASSWORD_ENV} for an encrypted key") from exc
    except ValueError as exc:
        raise SigningError(f"{flag} must be an Ed25519 private key in PEM, given {path}: {exc}. Make one with "
                           "`openssl genpkey -algorithm ed25519 -out vendor.key` and share "
                           "`openssl pkey -in vendor.key -pubout -out vendor.pub`") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{flag} must be an Ed25519 key, {path} holds a {type(key).__name__}: make one with "
                           "`openssl genpkey -algorithm ed25519 -out vendor.key`")
    return Signer(str(path), key)


def load_public_key(path: str | os.PathLike[str]) -> Any:
    try:
        pem = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningError(f"--key must be a readable public key file (PEM), given {path}: {exc}") from exc
    return public_key_from_pem(pem, f"--key {path}")


def public_key_from_pem(pem: str, what: str) -> Any:
    ser = _serialization()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = ser.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise SigningError(f"{what}: not an Ed25519 public key in PEM ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{what}: an Ed25519 public key is expected, found a {type(key).__name__}")
    return key


def check_envelope(envelope: dict[str, Any], public_key: Any) -> bytes:
    """The payload of `envelope` when one of its signatures is `public_key`'s; SigningError saying why not."""
    sslib = _sslib()
    try:
        env = sslib.dsse.Envelope.from_dict(envelope)
    except (KeyError, TypeError, ValueError) as exc:
        raise SigningError(f"not a DSSE envelope: {exc}") from exc
    if env.payload_type != PAYLOAD_TYPE:
        raise SigningError(f"the envelope's payloadType is {env.payload_type!r}, expected {PAYLOAD_TYPE!r}")
    keyid = fingerprint(public_key)
    key = sslib.signer.SSlibKey.from_crypto(public_key, keyid=keyid)
    try:
        env.verify([key], 1)
    except sslib.exceptions.VerificationError as exc:
        ids = ", ".join(sorted(env.signatures)) or "none"
        raise SigningError(f"no valid signature by key sha256:{keyid} (the envelope is signed by {ids}): the "
                           f"manifest was changed after signing, or signed by another key") from exc
    return bytes(env.payload)


def envelope_payload(envelope: dict[str, Any]) -> bytes:
    """The payload bytes of a DSSE envelope dict, unchecked (to read what it claims before checking it)."""
    try:
        return base64.b64decode(str(envelope["payload"]), validate=True)
    except (KeyError, ValueError) as exc:
        raise SigningError(f"not a DSSE envelope (payload: {exc})") from exc
