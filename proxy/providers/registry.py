"""Provider names and their implementations: the ledger's `jobs.provider` and the pricing tables' `provider`.

Adding a provider is adding its folder and one line here. Implementations are imported when first asked for,
so that the seam's users (metering, the poller, reconciliation) import no provider's code themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from proxy.providers.base import BatchProvider

if TYPE_CHECKING:
    from proxy.settings import Settings

DEFAULT_PROVIDER = "vertex"  # the provider of every job recorded before the ledger had a provider column


def _vertex(settings: Settings | None) -> BatchProvider:
    from proxy.providers.vertex.provider import VertexProvider

    return VertexProvider(base_url=settings.vertex_base_url if settings is not None else None)


def _openai(settings: Settings | None) -> BatchProvider:
    from proxy.providers.openai_batch.provider import OpenAIBatchProvider

    return OpenAIBatchProvider("openai", settings)


def _azure(settings: Settings | None) -> BatchProvider:
    from proxy.providers.openai_batch.provider import OpenAIBatchProvider

    return OpenAIBatchProvider("azure", settings)


_FACTORIES: dict[str, Callable[[Settings | None], BatchProvider]] = {"vertex": _vertex, "openai": _openai,
                                                                     "azure": _azure}
PROVIDERS = tuple(_FACTORIES)


class UnknownProvider(LookupError):
    """A provider name no implementation answers to."""


def get_provider(name: str = DEFAULT_PROVIDER, settings: Settings | None = None) -> BatchProvider:
    """The provider called `name`, configured from `settings` (None: its defaults, e.g. in a metering worker)."""
    return _FACTORIES[_known(name)](settings) if settings is not None else _default(_known(name))


def _known(name: str) -> str:
    if name not in _FACTORIES:
        raise UnknownProvider(f"no provider is called {name!r} (known: {', '.join(PROVIDERS)})")
    return name


@cache
def _default(name: str) -> BatchProvider:
    return _FACTORIES[name](None)
