"""The generated service account and the OAuth2 token endpoint, through google-auth's real flows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import google.auth.transport.requests
import httpx
import pytest
from google.auth import crypt, exceptions, jwt
from google.oauth2 import service_account

from proxy.emulator.oauth import GOOGLE_TOKEN_URI, JWT_BEARER, ServiceAccount
from proxy.emulator.stack import EmulatorStack
from tests.emulator.support import COLLECTION, envelope

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def _assertion(account_info: dict[str, str], **claims: Any) -> str:
    signer = crypt.RSASigner.from_string(account_info["private_key"], account_info["private_key_id"])
    now = int(time.time())
    payload = {"iss": account_info["client_email"], "aud": account_info["token_uri"], "iat": now, "exp": now + 3600,
               "scope": "https://www.googleapis.com/auth/cloud-platform", **claims}
    return jwt.encode(signer, payload).decode()


@pytest.fixture(scope="module")
def account_info(stack: EmulatorStack) -> dict[str, str]:
    return json.loads(stack.credentials_path.read_text())


def test_the_generated_file_is_a_service_account(stack: EmulatorStack, account_info: dict[str, str]) -> None:
    assert account_info["type"] == "service_account"
    assert account_info["token_uri"] == f"{stack.base_url}/token"
    assert account_info["project_id"] == stack.project_id
    assert account_info["client_email"].endswith(f"@{stack.project_id}.iam.gserviceaccount.com")
    assert account_info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert len(account_info["private_key_id"]) == 40
    assert stack.credentials_path.stat().st_mode & 0o077 == 0


def test_google_auth_refreshes_against_the_token_endpoint(stack: EmulatorStack) -> None:
    credentials = service_account.Credentials.from_service_account_file(
        str(stack.credentials_path), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    before = len([e for e in stack.request_log if e["api"] == "token"])
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token and credentials.token.startswith("ya29.")
    assert credentials.expiry is not None
    remaining = credentials.expiry - datetime.now(UTC).replace(tzinfo=None)  # google-auth keeps naive UTC
    assert 3500 < remaining.total_seconds() <= 3600
    token_calls = [e for e in stack.request_log if e["api"] == "token"]
    assert len(token_calls) == before + 1 and token_calls[-1]["status"] == 200
    reply = httpx.get(stack.base_url + COLLECTION, headers={"Authorization": f"Bearer {credentials.token}"})
    assert reply.status_code == 200


def test_a_self_signed_jwt_of_the_account_is_accepted(stack: EmulatorStack, account_info: dict[str, str]) -> None:
    # What google-cloud-aiplatform sends with service-account credentials: a JWT signed by the key itself.
    token = _assertion(account_info, aud="https://aiplatform.googleapis.com/", sub=account_info["client_email"])
    assert httpx.get(stack.base_url + COLLECTION, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    expired = _assertion(account_info, aud="https://aiplatform.googleapis.com/", iat=int(time.time()) - 7200,
                         exp=int(time.time()) - 3600)
    envelope(httpx.get(stack.base_url + COLLECTION, headers={"Authorization": f"Bearer {expired}"}),
             401, "UNAUTHENTICATED")


def test_token_endpoint_answers_google_s_shape(stack: EmulatorStack, account_info: dict[str, str]) -> None:
    for audience in (account_info["token_uri"], GOOGLE_TOKEN_URI):
        reply = httpx.post(f"{stack.base_url}/token",
                           data={"grant_type": JWT_BEARER, "assertion": _assertion(account_info, aud=audience)})
        assert reply.status_code == 200
        body = reply.json()
        assert set(body) == {"access_token", "expires_in", "token_type"}
        assert (body["expires_in"], body["token_type"]) == (3600, "Bearer")


@pytest.mark.parametrize(("case", "error"), [
    ("foreign key", "invalid_grant"),
    ("other issuer", "invalid_grant"),
    ("wrong audience", "invalid_grant"),
    ("expired", "invalid_grant"),
    ("too long", "invalid_grant"),
    ("garbage", "invalid_grant"),
    ("wrong grant type", "unsupported_grant_type"),
    ("no assertion", "invalid_request"),
])
def test_token_endpoint_refusals(stack: EmulatorStack, account_info: dict[str, str], case: str, error: str) -> None:
    now = int(time.time())
    form = {"grant_type": JWT_BEARER, "assertion": _assertion(account_info)}
    if case == "foreign key":
        stranger = ServiceAccount.generate(token_uri=account_info["token_uri"]).info()
        form["assertion"] = _assertion({**stranger, "client_email": account_info["client_email"]})
    elif case == "other issuer":
        form["assertion"] = _assertion(account_info, iss="someone@else.iam.gserviceaccount.com")
    elif case == "wrong audience":
        form["assertion"] = _assertion(account_info, aud="https://example.com/token")
    elif case == "expired":
        form["assertion"] = _assertion(account_info, iat=now - 7200, exp=now - 3600)
    elif case == "too long":
        form["assertion"] = _assertion(account_info, exp=now + 86400)
    elif case == "garbage":
        form["assertion"] = "a.b.c"
    elif case == "wrong grant type":
        form["grant_type"] = "client_credentials"
    else:
        del form["assertion"]
    reply = httpx.post(f"{stack.base_url}/token", data=form)
    assert reply.status_code == 400
    assert reply.json()["error"] == error and reply.json()["error_description"]


def test_google_auth_raises_refresh_error_for_a_foreign_key(stack: EmulatorStack, tmp_path: Any,
                                                            account_info: dict[str, str]) -> None:
    stranger = ServiceAccount.generate(token_uri=account_info["token_uri"]).info()
    forged = {**account_info, "private_key": stranger["private_key"], "private_key_id": stranger["private_key_id"]}
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    credentials = service_account.Credentials.from_service_account_file(
        str(path), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        credentials.refresh(google.auth.transport.requests.Request())


@pytest.fixture()
def short_lived() -> Iterator[EmulatorStack]:
    with EmulatorStack(job_seconds=0.5, token_lifetime=1) as running:
        yield running


def test_tokens_expire_after_the_configured_lifetime(short_lived: EmulatorStack) -> None:
    credentials = short_lived.credentials()
    credentials.refresh(google.auth.transport.requests.Request())
    headers = {"Authorization": f"Bearer {credentials.token}"}
    assert httpx.get(short_lived.base_url + COLLECTION, headers=headers).status_code == 200
    time.sleep(1.2)
    reply = httpx.get(short_lived.base_url + COLLECTION, headers=headers)
    assert "invalid authentication credentials" in envelope(reply, 401, "UNAUTHENTICATED")
    credentials.refresh(google.auth.transport.requests.Request())  # a fresh token works again
    assert httpx.get(short_lived.base_url + COLLECTION,
                     headers={"Authorization": f"Bearer {credentials.token}"}).status_code == 200
