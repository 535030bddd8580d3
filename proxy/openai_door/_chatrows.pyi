# The compiled fast path of proxy/openai_door/output_conversion.py (source and contract: _chatrows.c).
# -> (pos, lines: native int64s, ends: native int64s (+ base), answers)

def answer_rows(
    buf: bytes, pos: int, end: int, base: int, ids: bytes, ends: bytes, model_json: bytes, batch_id: bytes,
    output: bool, /,
) -> tuple[int, bytes, bytes, bytes]: ...

def decide_rows(
    lines: bytes, flags: bytes, ends: bytes, size: int, answered: bytearray, at: int, /,
) -> tuple[int, int, int, list[tuple[int, int]]]: ...
