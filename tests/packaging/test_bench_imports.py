"""The benchmarks live outside `make test`, so nothing else would notice one that no longer imports."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["bench.run", "bench.overhead", "bench.metering", "bench.report",
                                    "bench.openai_door", "bench.budgets", "bench.line_costs", "bench.placement",
                                    "bench.soak.run"])
def test_every_benchmark_imports(module: str) -> None:
    assert callable(importlib.import_module(module).main)
