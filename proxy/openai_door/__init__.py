"""The OpenAI door: OpenAI-format batch files and batches, run as Vertex batch jobs.

The conversions (pure, no I/O of their own): `file_conversion` checks a caller's JSONL and writes native Vertex
input lines (`chat_request` for chat bodies, `embedding_lines` for embeddings) with the `line_index` that gives
each output row back its custom_id; `output_conversion` turns Vertex output rows into OpenAI batch output and error
lines (`vertex_rows` decodes them, `chat_response` answers chat rows).
"""
