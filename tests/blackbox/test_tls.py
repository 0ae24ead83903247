"""TLS through rustls (--certfile, --keyfile, --ca-certs), with real clients.

Certificates come from ``trustme``: a throwaway CA, a server certificate for
127.0.0.1 and localhost, and a client certificate for the mutual-TLS case.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys

import httpx
import pytest
import trustme

TIMEOUT = 20


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def pems(ca, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": folder / "ca.pem",
        "cert": folder / "cert.pem",
        "key": folder / "key.pem",
    }
    ca.cert_pem.write_to_path(paths["ca"])
    cert.private_key_pem.write_to_path(paths["key"])
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(paths["cert"], append=i > 0)
    return paths


def test_https_with_httpx_and_curl(ferrule_server, pems):
    srv = ferrule_server(
        "apps.environ_echo:app", "--certfile", str(pems["cert"]), "--keyfile", str(pems["key"])
    )
    assert "Listening at: https://127.0.0.1:" in srv.log()
    url = f"https://127.0.0.1:{srv.port}/secure?x=1"
    trusted = ssl.create_default_context(cafile=str(pems["ca"]))
    with httpx.Client(verify=trusted, timeout=TIMEOUT) as client:
        response = client.post(url, content=b"over tls")
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    payload = response.json()
    assert payload["environ"]["wsgi.url_scheme"] == "https"
    assert payload["environ"]["PATH_INFO"] == "/secure"
    if shutil.which("curl"):
        out = subprocess.run(
            ["curl", "-sS", "--cacert", str(pems["ca"]), url],
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
        assert json.loads(out.stdout)["environ"]["wsgi.url_scheme"] == "https"


def test_plain_http_to_a_tls_port_gets_no_response(ferrule_server, pems):
    srv = ferrule_server(
        "apps.environ_echo:app", "--certfile", str(pems["cert"]), "--keyfile", str(pems["key"])
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{srv.port}/", timeout=TIMEOUT)
    # The server is unharmed by the garbage handshake.
    trusted = ssl.create_default_context(cafile=str(pems["ca"]))
    ok = httpx.get(f"https://127.0.0.1:{srv.port}/", verify=trusted, timeout=TIMEOUT)
    assert ok.status_code == 200


def test_client_certificates_with_ca_certs(ferrule_server, ca, pems, tmp_path):
    srv = ferrule_server(
        "apps.environ_echo:app",
        "--certfile",
        str(pems["cert"]),
        "--keyfile",
        str(pems["key"]),
        "--ca-certs",
        str(pems["ca"]),
    )
    url = f"https://127.0.0.1:{srv.port}/mtls"
    anonymous = ssl.create_default_context(cafile=str(pems["ca"]))
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=anonymous, timeout=TIMEOUT)
    client_cert = ca.issue_cert("client@example.com")
    context = ssl.create_default_context(cafile=str(pems["ca"]))
    client_cert.configure_cert(context)
    response = httpx.get(url, verify=context, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["environ"]["wsgi.url_scheme"] == "https"


def test_bad_tls_files_are_one_line_errors(tmp_path, pems):
    missing = tmp_path / "missing.pem"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferrule",
            "--certfile",
            str(missing),
            "--keyfile",
            str(pems["key"]),
        ]
        + ["apps.environ_echo:app"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(pems["ca"].parent),
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith(f"Error: --certfile {missing}"), out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "ferrule", "--certfile", str(pems["cert"]), "apps.x:app"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--keyfile" in out.stderr, out.stderr
