"""The rule that orders the targets a batch may go to (pure: the figures come from `proxy.placement.claims`).

A target is a candidate when its breaker lets a create through (`proxy.placement.breaker.may_try`) and the batch
fits: its queued tokens plus the batch's are within its quota (a target without a quota always fits).
Candidates are ordered by weighted headroom, the most first: `weight * (quota - queued - batch tokens)`.
So equal deployments fill evenly, and a deployment of weight 2 takes batches until its headroom is half that of
a weight-1 one. Targets without a quota come after those with room (the catalog says nothing of their queue, so
they take what the quoted ones cannot: a spill-over), the least queued tokens per unit of weight first (so
pools, whose members have no quota, spread evenly). Ties keep the catalog's (or pool's) order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Target:
    """Something placement chooses among: a catalog deployment, or one project/location of a native pool."""

    name: str
    weight: int = 1
    quota: int | None = None  # the enqueued-token quota (None: not capped)


@dataclass(frozen=True)
class TargetFigures:
    """A target with what it holds now: its effective quota, queued tokens, and breaker health."""

    target: Target
    quota: int | None
    queued: int
    health: str
    available: bool  # the breaker lets a create through now

    @property
    def headroom(self) -> int | None:
        """Tokens it can still take (None: not capped)."""
        return None if self.quota is None else max(0, self.quota - self.queued)

    def fits(self, tokens: int) -> bool:
        return self.quota is None or self.queued + tokens <= self.quota


def ordered(figures: Sequence[TargetFigures], tokens: int) -> list[TargetFigures]:
    """The candidates for a batch of `tokens`, best first (the rule in the module docstring)."""
    def key(item: tuple[int, TargetFigures]) -> tuple[int, Fraction, int]:
        position, figure = item
        weight = max(1, figure.target.weight)
        if figure.quota is None:
            return 1, Fraction(figure.queued, weight), position
        return 0, -Fraction(weight * (figure.quota - figure.queued - tokens)), position

    candidates = [(i, f) for i, f in enumerate(figures) if f.available and f.fits(tokens)]
    return [figure for _, figure in sorted(candidates, key=key)]
