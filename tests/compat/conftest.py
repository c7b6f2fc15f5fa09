"""Starts the real carillon binary on a free loopback port for the compatibility tests."""

import os
import subprocess
import tempfile

import pytest

ACCESS_KEY_ID = "AKIDCOMPATTEST"
SECRET_ACCESS_KEY = "compat-test-secret"
ACCOUNT_ID = "444455556666"


@pytest.fixture(scope="session")
def endpoint():
    binary = os.environ.get("CARILLON_BIN", "target/debug/carillon")
    data_dir = tempfile.mkdtemp(prefix="carillon-compat-")
    env = dict(
        os.environ,
        CARILLON_ACCESS_KEY_ID=ACCESS_KEY_ID,
        CARILLON_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        CARILLON_ACCOUNT_ID=ACCOUNT_ID,
        RUST_LOG="warn",
    )
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    first_line = process.stdout.readline()
    # "carillon is listening on 127.0.0.1:PORT (public URL http://127.0.0.1:PORT)"
    assert "listening on" in first_line, first_line
    address = first_line.split("listening on ")[1].split()[0]
    yield f"http://{address}"
    process.terminate()
    assert process.wait(timeout=10) == 0, "carillon exits cleanly on SIGTERM"


@pytest.fixture(scope="session")
def credentials():
    return {
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
        "region_name": "us-east-1",
    }
