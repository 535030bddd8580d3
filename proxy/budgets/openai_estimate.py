"""The estimate of an OpenAI-format batch file (a batch of an OpenAI or Azure model on the OpenAI door), before
it runs: the same range as a Vertex job's (`proxy.budgets.estimate`), read from the caller's kept bytes.

Per line, the figures are placement's queued-token count (`proxy.placement.queued_tokens`, one counter for both):
- input: the prompt tokens of the line's messages (or embedding input) by the budgets' documented text rule
  (`proxy.budgets.tokens`);
- output bound: `max_completion_tokens`, else `max_tokens`, else the model's `max_output_tokens` from its pricing
  table (a cap above that maximum counts as the maximum); embedding lines produce no output.
Both are priced with the pricing table metering uses (`proxy.metering.cost`), under each provider of the catalog
deployments that serve the model (metering prices a job by its deployment's provider and model):
- `high` = input + output bound at the batch rates, the HIGHEST over those deployments (the batch may be placed on
  any of them); when a model's table has a long-context tier, at that (dearer) tier;
- `low` = input only, each token at the cheaper of the input and cached-input batch rates (OpenAI and Azure cache
  prompts on their own, unasked), the LOWEST over the deployments, so it never exceeds the metered cost.
Lines that are not JSON request objects cost nothing (the upstream fails them; failed lines are free). Bytes not
read in time are bounded by size as for Vertex: one input token per byte at the dearest input rate, one line per
`MIN_LINE_BYTES`, each producing the model's maximum output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from proxy.budgets.estimate import Estimate, EstimateError
from proxy.metering.cost import price_units, row_units
from proxy.metering.pricing import PricingTable, Rates, TierRates
from proxy.placement.queued_tokens import QueuedTokens
from proxy.providers.base import SUCCEEDED, RowUsage

MAX_LINES_PER_BATCH = 50_000  # OpenAI's and Azure's limit of requests per batch file
MIN_LINE_BYTES = len(b'{"custom_id":"","method":"POST","url":"/v1/embeddings","body":{"input":""}}\n')


@dataclass(frozen=True)
class _Priced:
    """One deployment's pricing: its rates and the model's output maximum."""

    rates: Rates
    max_output: int

    def dearest(self) -> TierRates:
        long_context = self.rates.long_context
        return long_context.batch if long_context is not None else self.rates.batch


def deployment_prices(table: PricingTable, deployments: Sequence[tuple[str, str]], at: datetime) -> list[_Priced]:
    """The rates of each `(provider, model)` a batch may run on; EstimateError when one is unpriced."""
    priced: list[_Priced] = []
    for provider, model in dict.fromkeys(deployments):
        rates = table.rates_for(provider, model, at)
        if rates is None:
            raise EstimateError(f"the model {model!r} has no price on {provider} in the pricing table")
        max_output = table.max_output_tokens(provider, model)
        if max_output is None and rates.kind != "embedding":
            raise EstimateError(f"the pricing table gives no max_output_tokens for the model {model!r} on {provider}")
        priced.append(_Priced(rates, max_output or 0))
    if not priced:
        raise EstimateError("no deployment of the model catalog serves this model")
    return priced


class OpenAILineEstimator:
    """Feeds OpenAI-format JSONL in chunks of any size into an `Estimate` (the interface of `LineEstimator`, so
    `proxy.budgets.inputs.estimate_objects` reads for it)."""

    def __init__(self, priced: Sequence[_Priced], *, model: str) -> None:
        self.priced = list(priced)
        self.max_output = max(p.max_output for p in self.priced)
        self.counter = QueuedTokens(default_output=self.max_output)
        self.estimate = Estimate(model=model)
        self._bound_high = 0

    def feed(self, chunk: bytes) -> None:
        """Count every whole line of what came so far."""
        self.estimate.bytes_read += len(chunk)
        self.counter.feed(chunk)

    def close_object(self) -> None:
        """The file is one object: nothing to do between objects."""

    def bound_unread(self, size: int) -> None:
        """Add the size bound of `size` unread bytes (see the module docstring) to `high`."""
        if size <= 0:
            return
        lines = min(size // MIN_LINE_BYTES + 1, max(0, MAX_LINES_PER_BATCH - self.counter.lines))
        self.estimate.bytes_bounded += size
        self.estimate.max_output_tokens += lines * self.max_output
        self._bound_high += max(size * max(p.dearest().input, p.dearest().audio_input)
                                + lines * p.max_output * p.dearest().output for p in self.priced)

    def close(self) -> Estimate:
        """Count the last line and price the figures."""
        counter, estimate = self.counter, self.estimate
        counter.close()
        estimate.lines, estimate.malformed = counter.lines, counter.malformed
        estimate.input_tokens = counter.prompt_tokens
        estimate.max_output_tokens += counter.output_bound
        highs, lows = [], []
        for priced in self.priced:
            rates = priced.rates
            # embedding rows bill their tokens as input (`row_units`), so the one usage shape fits both kinds
            high = RowUsage(SUCCEEDED, input=counter.prompt_tokens, output=counter.output_bound)
            highs.append(price_units(row_units(high, rates), priced.dearest()))
            cheapest = min(rates.batch.input, rates.batch.cached_input) if rates.kind != "embedding" \
                else rates.batch.input
            lows.append(counter.prompt_tokens * cheapest)
        estimate.high_pico = max(highs) + self._bound_high
        estimate.low_pico = min(lows)
        return estimate
