# The compiled accelerator of proxy/budgets/estimate.py (source and contract: _estscan.c).
# per tier: lines, input tokens, output bound
TierSums = tuple[int, int, int]

def scan_requests(
    buf: bytes, pos: int, stop: int, above: int, max_output: int, /
) -> tuple[int, TierSums, TierSums]: ...

def simd_paths() -> tuple[str, ...]: ...
def use_simd(name: str, /) -> None: ...
