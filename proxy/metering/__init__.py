"""Metering: the pricing table, the usage of each output row, its cost, and a job's totals.

    pricing   PricingTable.load(dir) -> table.rates_for(model, at) -> Rates (integer pUSD per token/character)
    usage     parse_row(line) -> RowUsage (succeeded | failed | no_usage | malformed)
    cost      price_row(usage, rates, batch=True) -> int pUSD
    totals    JobTotals: line counts, token totals and billable units per tier of a job, priced once
    scanner   LineScanner: chunks of output bytes -> lines -> a job's totals (the inner loop)
    _rowscan  scan_gemini: the scanner's compiled part (C), which claims the common rows in runs
    outputs   list_output_objects / fingerprint / iter_chunks / meter_objects on Cloud Storage, in this process
    ranges    RangeMeter: large outputs by byte range in worker processes
"""

from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingError, PricingTable, Rates, default_pricing_dir
from proxy.metering.totals import JobTotals
from proxy.providers.vertex.usage import RowUsage, parse_row

__all__ = ["JobTotals", "PricingError", "PricingTable", "Rates", "RowUsage", "default_pricing_dir", "parse_row",
           "price_row"]
