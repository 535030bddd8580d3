"""The OpenAI and Azure OpenAI batch stand-ins: files and batches, served by the emulator beside Vertex.

`api.py` routes both (OpenAI at `/openai-api/v1`, each Azure resource at `/azure/{resource}`); `flavor.py` holds
what differs between them; `files.py` and `batches.py` keep the objects; `runner.py` moves batches through their
states, answering each line as `lines.py` says, with usage by `proxy.emulator.openai_usage_rule`.
"""
