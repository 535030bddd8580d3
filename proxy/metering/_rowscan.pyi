# The compiled accelerator of proxy/providers/vertex/scanner.py (source and contract: _rowscan.c).
# rows; tokens: prompt, cached, candidates, thoughts, tool-use prompt, audio prompt, audio cached;
# units: input, audio input, cached input, cached audio input, output
TierSums = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int]

def scan_gemini(
    buf: bytes, pos: int, above: int, /
) -> tuple[int, int, int, TierSums, TierSums, list[tuple[str, int]]]: ...

def scan_rows(buf: bytes, pos: int, limit: int, /) -> tuple[int, bytes]: ...

# rates: the long-context threshold, then 5 base and 5 long-context batch rates (pUSD per unit, cost.UNIT_RATES)
def row_tails(
    records: bytes, digests: list[bytes | None], template: tuple[object, ...], rates: tuple[int, ...] | None, /
) -> list[bytes | None]: ...
