"""A small mixed output read by whichever scanner the process has: the figures must not depend on which."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from proxy.metering.pricing import PricingTable
from proxy.metering.totals import JobTotals
from proxy.providers.vertex.scanner import LineScanner


def figures() -> list[object]:
    """(rows, failed rows, exact cost in picodollars) of 50 succeeded rows and a failed one."""
    rates = PricingTable.load().rates_for("vertex", "gemini-2.5-flash", datetime(2026, 11, 1, tzinfo=UTC))
    assert rates is not None
    totals = JobTotals(rates)
    scanner = LineScanner(totals)
    rows: list[dict[str, object]] = [
        {"status": "", "response": {"modelVersion": "gemini-2.5-flash", "usageMetadata": {
            "promptTokenCount": 10 + i, "candidatesTokenCount": 5 * i, "thoughtsTokenCount": i}}}
        for i in range(50)]
    rows.append({"status": "Quota exceeded", "request": {}})
    scanner.feed(b"".join(json.dumps(row).encode() + b"\n" for row in rows))
    scanner.close()
    return [scanner.rows, totals.failed, str(totals.cost_pico)]
