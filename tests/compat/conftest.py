"""Starts the real carillon binary on a free loopback port for the compatibility tests."""

import os
import subprocess
import tempfile

import pytest

ACCESS_KEY_ID = "AKIDCOMPATTEST"
SECRET_ACCESS_KEY = "compat-test-secret"
ACCOUNT_ID = "444455556666"


def start_server(prefix, extra_env=None, write_files=None):
    """Starts the binary on a free loopback port with a fresh data directory; `write_files`
    may put files into that directory first. Returns the process and its endpoint."""
    binary = os.environ.get("CARILLON_BIN", "target/debug/carillon")
    data_dir = tempfile.mkdtemp(prefix=prefix)
    env = dict(
        os.environ,
        CARILLON_ACCESS_KEY_ID=ACCESS_KEY_ID,
        CARILLON_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        CARILLON_ACCOUNT_ID=ACCOUNT_ID,
        RUST_LOG="warn",
    )
    if write_files:
        env.update(write_files(data_dir))
    env.update(extra_env or {})
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
    return process, f"http://{address}"


def stop_server(process):
    process.terminate()
    assert process.wait(timeout=10) == 0, "carillon exits cleanly on SIGTERM"


@pytest.fixture(scope="session")
def endpoint():
    process, url = start_server("carillon-compat-")
    yield url
    stop_server(process)


@pytest.fixture(scope="session")
def credentials():
    return {
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
        "region_name": "us-east-1",
    }


# Two teams with their own accounts, a read-only key, a rate-limited key, as a keys file.
TEAM_KEYS = {
    "alice": ("AKIAEXAMPLEALICE0001", "alice-secret-0001", "111111111111"),
    "bob": ("AKIAEXAMPLEBOBBY0002", "bob-secret-000002", "222222222222"),
    "reader": ("AKIAEXAMPLEREADER003", "reader-secret-003", "111111111111"),
    "slow": ("AKIAEXAMPLESLOWKEY04", "slow-secret-00004", "111111111111"),
}
TEAM_ACTIONS = {
    "alice": '["chime:*"]',
    "bob": '["chime:*"]',
    "reader": '["chime:Get*", "chime:List*"]',
    "slow": '["chime:*"]\nrate = 20\nburst = 4',
}


def write_team_keys(data_dir):
    keys_file = os.path.join(data_dir, "keys.toml")
    with open(keys_file, "w") as f:
        for name, (key_id, secret, account) in TEAM_KEYS.items():
            f.write(
                f'[[key]]\naccess_key_id = "{key_id}"\nsecret_access_key = "{secret}"\n'
                f'account_id = "{account}"\nactions = {TEAM_ACTIONS[name]}\n\n'
            )
    return {"CARILLON_KEYS_FILE": keys_file}


@pytest.fixture(scope="session")
def teams_endpoint():
    """A second server whose keys file gives two teams their own keys."""
    process, url = start_server("carillon-teams-", write_files=write_team_keys)
    yield url
    stop_server(process)


def team_credentials(name):
    key_id, secret, _ = TEAM_KEYS[name]
    return {"aws_access_key_id": key_id, "aws_secret_access_key": secret, "region_name": "us-east-1"}


def carillon_admin(endpoint, method, path, body=None):
    """Calls Carillon's admin extension (/_carillon/...), SigV4-signed by botocore with the
    root key, which has the carillon:Admin action."""
    import json
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body).encode() if body is not None else None
    request = AWSRequest(method=method, url=endpoint + path, data=data,
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "chime", "us-east-1").add_auth(request)
    prepared = request.prepare()
    call = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method=method)
    with urllib.request.urlopen(call) as response:
        text = response.read().decode()
        return response.status, (json.loads(text) if text else None)
