"""Who may call: OpenAI takes `Authorization: Bearer KEY`; an Azure resource takes `api-key: KEY`, `Authorization:
Bearer KEY` (the v1 form, through the plain OpenAI client) or a bearer token from the emulator's own OAuth2
endpoint `POST /token`, standing in for a Microsoft Entra ID token."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from proxy.emulator.oauth import TokenIssuer
from proxy.emulator.openai_api.errors import OpenAIError

AZURE_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.")


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _same(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


def check_openai(request: Request, key: str) -> None:
    """OpenAI's 401s: no key, or a wrong one (shown with its last four characters, as OpenAI does)."""
    given = _bearer(request)
    if given is None:
        raise OpenAIError(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                               "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    if not _same(given, key):
        raise OpenAIError(401, f"Incorrect API key provided: {given[:3]}{'*' * 8}{given[-4:]}. You can find your "
                               "API key at https://platform.openai.com/account/api-keys.", code="invalid_api_key")


def check_azure(request: Request, key: str, tokens: TokenIssuer) -> None:
    """Azure's 401, in its own short envelope."""
    api_key = request.headers.get("api-key")
    bearer = _bearer(request)
    if api_key is not None and _same(api_key, key):
        return
    if bearer is not None and (_same(bearer, key) or tokens.valid(bearer)):
        return
    raise OpenAIError(401, AZURE_DENIED, code="401", azure_shape=True)
