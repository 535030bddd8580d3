"""One async client for the Files and Batches APIs of an OpenAI account or an Azure OpenAI deployment.

    OpenAI:  {base_url}/files, {base_url}/batches...                 (base_url ends in /v1; bearer key)
    Azure:   {base_url}/openai/files|batches...?api-version=...      (api-key header, or an Entra bearer token)

Faults: a read (GET) and a file upload are tried again on 429 (after the Retry-After the deployment asked for,
within the retry policy's budget), 5xx, timeouts, refused connections and broken ones; what is left is raised as
`UpstreamRefused`. A batch create is never tried again blindly: when its reply is lost (a timeout, a reset, a
5xx) the batch may exist, so the client first looks for a batch whose metadata carries the create's own label
(`vbp-batch`) and returns that one; only when none is listed is the create sent again. The transport is
injectable (tests, or an ASGI app).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import IO, Any

import httpx

from proxy.catalog.deployment import Deployment
from proxy.providers.openai_batch.auth import TokenCredential, deployment_auth
from proxy.providers.openai_batch.errors import UpstreamRefused, error_of
from proxy.upstream.retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

LIST_PAGE = 100
MAX_LOOKUP_PAGES = 20  # a lost create is looked for among the newest 2,000 batches


class OpenAIBatchClient:
    """Files + Batches calls on one deployment; `aclose()` when done."""

    def __init__(self, deployment: Deployment, *, auth: httpx.Auth | None = None,
                 credential: TokenCredential | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0, connect_timeout: float = 10.0, policy: RetryPolicy | None = None) -> None:
        self.deployment = deployment
        self.azure = deployment.provider == "azure"
        self.policy = policy or RetryPolicy()
        base = deployment.base_url.rstrip("/")
        self._base = f"{base}/openai" if self.azure else base
        self._client = httpx.AsyncClient(
            auth=auth or deployment_auth(deployment, credential=credential), transport=transport,
            timeout=httpx.Timeout(timeout, connect=connect_timeout), follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> OpenAIBatchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _url(self, path: str) -> str:
        return self._base + path

    def _params(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        params = dict(extra or {})
        if self.azure:
            params["api-version"] = self.deployment.api_version
        return params

    # -- calls -----------------------------------------------------------------------------------------------

    async def upload_file(self, source: IO[bytes], *, filename: str) -> dict[str, Any]:
        """Upload a batch input file (purpose `batch`) from `source` (rewound before each attempt)."""
        def send() -> Awaitable[httpx.Response]:
            source.seek(0)
            return self._client.post(self._url("/files"), params=self._params(), data={"purpose": "batch"},
                                     files={"file": (filename, source, "application/jsonl")})
        return await self._json(send, what="upload the batch file", retry=True)

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json(lambda: self._client.get(self._url(f"/batches/{batch_id}"), params=self._params()),
                                what="read the batch", retry=True)

    async def get_batch_file(self, file_id: str) -> dict[str, Any]:
        """A file object (its status, size)."""
        return await self._json(lambda: self._client.get(self._url(f"/files/{file_id}"), params=self._params()),
                                what="read the file", retry=True)

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        # A cancel asked twice is still one cancel: safe to try again.
        return await self._json(
            lambda: self._client.post(self._url(f"/batches/{batch_id}/cancel"), params=self._params()),
            what="cancel the batch", retry=True)

    async def delete_file(self, file_id: str) -> None:
        await self._json(lambda: self._client.delete(self._url(f"/files/{file_id}"), params=self._params()),
                         what="delete the batch file", retry=True)

    async def list_batches(self, *, max_pages: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every batch, newest first, all pages (at most `max_pages`)."""
        after: str | None = None
        pages = 0
        while True:
            params = self._params({"limit": str(LIST_PAGE), **({"after": after} if after else {})})
            page = await self._json(lambda: self._client.get(self._url("/batches"), params=params),  # noqa: B023
                                    what="list the batches", retry=True)
            data: list[Any] = page["data"] if isinstance(page.get("data"), list) else []
            for item in data:
                if isinstance(item, dict):
                    yield item
            pages += 1
            if not page.get("has_more") or not data or (max_pages is not None and pages >= max_pages):
                return
            after = str(data[-1].get("id"))

    async def find_batch(self, key: str, value: str) -> dict[str, Any] | None:
        """The newest batch whose metadata maps `key` to `value`, or None."""
        async for item in self.list_batches(max_pages=MAX_LOOKUP_PAGES):
            metadata = item.get("metadata")
            if isinstance(metadata, dict) and metadata.get(key) == value:
                return item
        return None

    async def create_batch(self, *, input_file_id: str, endpoint: str, metadata: dict[str, str],
                           label: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Create a batch; (batch, reply headers). `metadata[label]` must be unique to this create: a create whose
        reply was lost is looked up by it before being sent again, so that it is never made twice."""
        body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h",
                "metadata": metadata}
        slept, attempt = 0.0, 1
        while True:
            try:
                response = await self._client.post(self._url("/batches"), params=self._params(), json=body)
            except httpx.HTTPError as exc:
                failure = self._no_answer(exc, "create the batch")
            else:
                if response.status_code in (200, 201):
                    return self._parse(response, "create the batch"), dict(response.headers)
                failure = self._refusal(response, "create the batch")
            if not failure.transient:
                raise failure
            if failure.reason != "connect" and failure.status != 429:
                # The create may have reached the deployment: look before sending it again.
                found = await self.find_batch(label, metadata[label])
                if found is not None:
                    log.warning("a create on %s lost its reply; found the batch it made", self.deployment.name)
                    return found, {}
            delay = self._delay(failure, attempt)
            if attempt >= self.policy.attempts or slept + delay > self.policy.max_seconds:
                raise failure
            await asyncio.sleep(delay)
            slept, attempt = slept + delay, attempt + 1

    async def download(self, file_id: str, sink: IO[bytes]) -> int:
        """Stream a file's content into `sink`; returns its size. A download broken off midway starts again
        from the beginning (the sink is emptied first)."""
        async def once() -> int:
            sink.seek(0)
            sink.truncate()
            size = 0
            async with self._client.stream("GET", self._url(f"/files/{file_id}/content"),
                                           params=self._params()) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._refusal(response, "read the output file")
                async for chunk in response.aiter_bytes(1 << 20):
                    sink.write(chunk)
                    size += len(chunk)
            return size
        return await self._retrying(once, what="read the output file")

    # -- plumbing -----------------------------------------------------------------------------------------------

    async def _json(self, send: Callable[[], Awaitable[httpx.Response]], *, what: str,
                    retry: bool) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            response = await send()
            if response.status_code not in (200, 201):
                raise self._refusal(response, what)
            return self._parse(response, what)
        return await self._retrying(once, what=what) if retry else await once()

    async def _retrying(self, once: Callable[[], Awaitable[Any]], *, what: str) -> Any:
        slept, attempt = 0.0, 1
        while True:
            try:
                return await once()
            except httpx.HTTPError as exc:
                failure = self._no_answer(exc, what)
            except UpstreamRefused as exc:
                failure = exc
            delay = self._delay(failure, attempt)
            if not failure.transient or attempt >= self.policy.attempts or slept + delay > self.policy.max_seconds:
                raise failure
            await asyncio.sleep(delay)
            slept, attempt = slept + delay, attempt + 1

    def _delay(self, failure: UpstreamRefused, attempt: int) -> float:
        backoff = self.policy.backoff(attempt)
        return max(backoff, failure.retry_after) if failure.retry_after is not None else backoff

    def _parse(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            parsed = json.loads(response.content)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UpstreamRefused(f"{self.deployment.name} answered the call to {what} with something not JSON",
                                  status=502, deployment=self.deployment.name)
        return parsed

    def _refusal(self, response: httpx.Response, what: str) -> UpstreamRefused:
        message, code = error_of(response.content)
        return UpstreamRefused(f"{self._who()} could not {what}: {message}", status=response.status_code, code=code,
                               retry_after=retry_after(response.headers.items()), deployment=self.deployment.name)

    def _no_answer(self, exc: httpx.HTTPError, what: str) -> UpstreamRefused:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            reason = "connect"
        elif isinstance(exc, httpx.TimeoutException):
            reason = "timeout"
        else:
            reason = "reset"
        words = {"connect": "could not be reached", "timeout": "did not answer in time",
                 "reset": "broke the connection"}[reason]
        return UpstreamRefused(f"{self._who()} {words} (trying to {what})", status=None, reason=reason,
                               deployment=self.deployment.name)

    def _who(self) -> str:
        kind = "Azure OpenAI" if self.azure else "OpenAI"
        return f"{kind} (deployment {self.deployment.name})"
