"""Self-signed TLS certificates for tests, made with the openssl CLI."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path


def make_self_signed_cert(
    directory: str | os.PathLike[str], common_name: str = "127.0.0.1"
) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (RSA 2048, unencrypted, valid 2 days) into
    ``directory`` for ``common_name``, which is also the subjectAltName (``IP:`` for an
    address, else ``DNS:``). Return (cert, key); the cert can serve as its own CA file.

    Raises RuntimeError with openssl's output if openssl fails.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    try:
        ipaddress.ip_address(common_name)
        san = f"IP:{common_name}"
    except ValueError:
        san = f"DNS:{common_name}"
    cmd = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={common_name}",
        "-addext",
        f"subjectAltName={san}",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    ]
    res = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl failed: {res.stderr.decode(errors='replace')}")
    return cert, key
