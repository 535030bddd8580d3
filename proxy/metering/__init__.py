"""Metering: the pricing table, the cost of each output row's usage, a job's totals, reading its outputs.

    pricing   PricingTable.load(dir) -> table.rates_for(provider, model, at) -> Rates (integer pUSD per unit)
    cost      price_row(usage, rates, batch=True) -> int pUSD, for a provider-neutral RowUsage
    totals    JobTotals: line counts, token totals and billable units per tier of a job, priced once
    objects   fingerprint / iter_chunks / meter_objects on Cloud Storage, rows read by the provider's reader
    ranges    RangeMeter: large outputs by byte range in worker processes
    _rowscan  scan_gemini: compiled here, but the Vertex row reader's (proxy.providers.vertex.scanner) to use
Which objects a job wrote, and how each row reads (its usage), is asked of the job's provider through the seam
(`proxy.providers.base`); metering knows no provider's names.
"""

from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingError, PricingTable, Rates, default_pricing_dir
from proxy.metering.totals import JobTotals
from proxy.providers.base import RowUsage

__all__ = ["JobTotals", "PricingError", "PricingTable", "Rates", "RowUsage", "default_pricing_dir", "price_row"]
