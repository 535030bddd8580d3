"""The OpenAI door: OpenAI-format batch files and batches, run as Vertex batch jobs.

The conversions (pure, no I/O of their own): `file_conversion` checks a caller's JSONL and writes native Vertex
input lines (`chat_request` for chat bodies, `embedding_lines` for embeddings) with the `line_index` that gives
each output row back its custom_id; `output_conversion` turns Vertex output rows into OpenAI batch output and error
lines (`vertex_rows` decodes them, `chat_response` answers chat rows).

The HTTP side: `routes` lists `files_api` and `batches_api` (on the `door`: the services, VBP_FILES_BUCKET's
`bucket`, the caller); `records` reads and writes their rows, `file_views` and `batch_views` show them in OpenAI's
shapes, `upload` reads multipart uploads, `output_content` serves output files converted on the fly, `compat`
accepts LiteLLM-style clients, `upstream_errors` translates Vertex's errors.
"""
