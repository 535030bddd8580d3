"""The loaded catalog: its deployments in file order, found by name or by the model they serve."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.catalog.deployment import Deployment


@dataclass(frozen=True)
class Catalog:
    """Deployments in the catalog file's order (`source`: the file, "" for the empty catalog)."""

    deployments: tuple[Deployment, ...] = ()
    source: str = ""
    _by_name: dict[str, Deployment] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_model: dict[str, tuple[Deployment, ...]] = field(default_factory=dict, init=False, repr=False,
                                                         compare=False)

    def __post_init__(self) -> None:
        by_model: dict[str, list[Deployment]] = {}
        for deployment in self.deployments:
            self._by_name[deployment.name] = deployment
            by_model.setdefault(deployment.model, []).append(deployment)
        self._by_model.update((model, tuple(found)) for model, found in by_model.items())

    @classmethod
    def of(cls, deployments: Iterable[Deployment], source: str = "") -> Catalog:
        return cls(tuple(deployments), source)

    def named(self, name: str) -> Deployment | None:
        """The deployment called `name`, or None."""
        return self._by_name.get(name)

    def serving(self, model: str) -> tuple[Deployment, ...]:
        """Every deployment of `model`, in file order (empty when the catalog does not serve it)."""
        return self._by_model.get(model, ())

    def models(self) -> tuple[str, ...]:
        """The models served, in the order of their first deployment."""
        return tuple(self._by_model)

    def __bool__(self) -> bool:
        return bool(self.deployments)


def file_provider(catalog: Catalog | None, model: str) -> str:
    """Where an OpenAI-format batch file of `model` runs: its first catalog deployment's provider; `vertex` when the
    catalog does not serve it (or there is none), as before the catalog."""
    served = catalog.serving(model) if catalog else ()
    return served[0].provider if served else "vertex"


def serving_pairs(catalog: Catalog | None, model: str) -> list[tuple[str, str]]:
    """`(provider, model)` of every deployment serving `model`: what a batch of it may be priced under."""
    return [(d.provider, d.model) for d in (catalog.serving(model) if catalog else ())]
