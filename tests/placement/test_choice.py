"""The ordering rule: weighted headroom among the healthy targets the batch fits in."""

from __future__ import annotations

from proxy.placement.choice import Target, TargetFigures, ordered


def _f(name: str, queued: int, quota: int | None = 1000, weight: int = 1, available: bool = True) -> TargetFigures:
    return TargetFigures(Target(name, weight, quota), quota, queued, "healthy" if available else "cooling",
                         available)


def _names(figures: list[TargetFigures]) -> list[str]:
    return [f.target.name for f in figures]


def test_the_most_headroom_first_and_ties_in_catalog_order() -> None:
    assert _names(ordered([_f("a", 500), _f("b", 100), _f("c", 100)], 10)) == ["b", "c", "a"]


def test_a_batch_goes_only_where_it_fits() -> None:
    assert _names(ordered([_f("a", 950), _f("b", 900)], 100)) == ["b"]
    assert _names(ordered([_f("a", 950), _f("b", 901)], 100)) == []


def test_weight_scales_headroom() -> None:
    # weight 2 with 400 free (score 2 * 390) beats weight 1 with 700 free (690)
    assert _names(ordered([_f("a", 300), _f("b", 600, weight=2)], 10)) == ["b", "a"]
    # at 300 free (2 * 290 = 580) it no longer does
    assert _names(ordered([_f("a", 300), _f("b", 700, weight=2)], 10)) == ["a", "b"]


def test_cooling_targets_are_skipped() -> None:
    assert _names(ordered([_f("a", 0, available=False), _f("b", 900)], 10)) == ["b"]


def test_unquoted_targets_spill_over_least_queued_per_weight() -> None:
    figures = [_f("u1", 300, quota=None), _f("q", 0), _f("u2", 500, quota=None, weight=2)]
    assert _names(ordered(figures, 10)) == ["q", "u2", "u1"]  # 250 per weight before 300
    assert _names(ordered(figures, 10**9)) == ["u2", "u1"]  # q cannot take 1e9
