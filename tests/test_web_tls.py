"""HTTPS: ``plexa server FILE --http 0 --tls-cert C --tls-key K`` with a self-signed
certificate made here (``cryptography``); the client checks it against that certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import plexa_shm, wait_for
from web_helpers import ENV, ROOT, lines_of, read_banner, stop

pytestmark = pytest.mark.slow
PIPE = """
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 50}}
  mid: {class: "actors:Sink"}
connections:
  src.out: [mid.inp]
"""


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plexa test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    key_file.chmod(0o600)
    return cert_file, key_file


def test_the_api_is_served_over_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    shm_before = plexa_shm()
    name = f"tls{id(cfg) % 10**6}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name, "--http", "0",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=ROOT,
    )  # fmt: skip
    try:
        got = read_banner(lines_of(proc), {"url", "token", "dashboard"})
        url, token = got["url"], got["token"]
        assert url.startswith("https://127.0.0.1:") and got["dashboard"].startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, verify=trust, headers=auth, timeout=30) as c:
            wait_for(lambda: c.get(f"/runs/{name}/status").status_code == 200, 30, "status")
            assert c.get(f"/runs/{name}/status").json()["run"]["name"] == name
            assert c.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), httpx.Client(
            base_url=url, timeout=10
        ) as untrusting:
            untrusting.get("/health")
        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError), httpx.Client(base_url=plain, timeout=10) as c:
            c.get("/health").raise_for_status()
    finally:
        stop(proc)
    assert proc.returncode == 0
    wait_for(lambda: plexa_shm() <= shm_before, 10, "the run's shared memory to be removed")


def test_a_tls_option_alone_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    r = subprocess.run(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--http", "0", "--tls-cert", "x"],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "go together" in r.stderr
