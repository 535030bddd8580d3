"""The provider seam: metering, the poller and reconciliation know no Vertex names; the registry finds providers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.metering.totals import JobTotals
from proxy.providers.base import SUCCEEDED, RowUsage
from proxy.providers.registry import DEFAULT_PROVIDER, PROVIDERS, UnknownProvider, get_provider
from proxy.providers.vertex.provider import VertexProvider
from proxy.providers.vertex.usage import parse_row
from proxy.settings import Settings

PROXY = Path(__file__).resolve().parents[2] / "proxy"
# The names of Vertex's API that only the Vertex provider may use.
VERTEX_NAMES = ("gcsOutputDirectory", "usageMetadata", "batchPredictionJobs", "JOB_STATE_")
VERTEX_IMPORT = re.compile(r"^\s*(from|import)\s+proxy\.providers\.vertex\b", re.MULTILINE)


def seam_users() -> list[Path]:
    return sorted((PROXY / "metering").glob("*.py")) + [PROXY / "ledger" / "reconcile.py"]


def test_metering_and_reconciliation_know_no_vertex_names() -> None:
    found = []
    for path in seam_users():
        text = path.read_text()
        found += [f"{path.relative_to(PROXY)}: {name}" for name in VERTEX_NAMES if name in text]
        found += [f"{path.relative_to(PROXY)}: {m.group(0).strip()}" for m in VERTEX_IMPORT.finditer(text)]
    assert found == []
    # The check can fail: the Vertex provider itself holds every one of them.
    vertex = "".join(path.read_text() for path in sorted((PROXY / "providers" / "vertex").glob("*.py")))
    assert [name for name in VERTEX_NAMES if name not in vertex] == []
    assert "job_meter.py" in {path.name for path in seam_users()}


def test_the_registry_maps_names_to_providers() -> None:
    assert (DEFAULT_PROVIDER, PROVIDERS) == ("vertex", ("vertex", "openai", "azure"))
    default = get_provider()
    assert isinstance(default, VertexProvider) and default.name == "vertex" and default.base_url is None
    assert get_provider("vertex") is default  # one per process when unconfigured (metering workers)
    configured = get_provider("vertex", Settings(vertex_base_url="http://127.0.0.1:9/"))
    assert isinstance(configured, VertexProvider) and configured.base_url == "http://127.0.0.1:9/"
    with pytest.raises(UnknownProvider) as raised:
        get_provider("bedrock")
    assert str(raised.value) == "no provider is called 'bedrock' (known: vertex, openai, azure)"


def test_vertex_states_and_model_names_through_the_seam() -> None:
    vertex = get_provider("vertex")
    assert [vertex.ended(s) for s in ("JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED",
                                      "JOB_STATE_CANCELLING", "JOB_STATE_EXPIRED", "nonsense")] == [
        False, True, True, False, True, False]
    assert vertex.state_name("JOB_STATE_PARTIALLY_SUCCEEDED") == "PARTIALLY_SUCCEEDED"
    assert vertex.model_id("publishers/google/models/gemini-2.5-flash@001") == "gemini-2.5-flash"
    assert vertex.model_id(" gemini-2.5-pro ") == "gemini-2.5-pro"
    assert vertex.label_value("Team.Data Science") == "team-data-science"
    assert (vertex.served("my-project", "us-central1"), vertex.served("My Project", "us-central1")) == (True, False)


def test_the_vertex_reader_maps_usage_metadata_onto_neutral_kinds() -> None:
    totals = JobTotals(None)
    reader = get_provider("vertex").row_reader(totals)
    reader.feed(b'{"status":"","response":{"modelVersion":"m","usageMetadata":{"promptTokenCount":50,'
                b'"cachedContentTokenCount":20,"candidatesTokenCount":7,"thoughtsTokenCount":3,'
                b'"toolUsePromptTokenCount":4,"promptTokensDetails":[{"modality":"AUDIO","tokenCount":10}]}}}\n')
    reader.close()
    assert (reader.rows, totals.succeeded, totals.prompt, totals.cached, totals.candidates, totals.thoughts,
            totals.tool_use_prompt, totals.audio_prompt) == (1, 1, 50, 20, 7, 3, 4, 10)
    assert parse_row(b'{"response":{"usageMetadata":{"promptTokenCount":50,"cachedContentTokenCount":20,'
                     b'"candidatesTokenCount":7,"thoughtsTokenCount":3,"toolUsePromptTokenCount":4}}}') == RowUsage(
        SUCCEEDED, input=50, cached_input=20, output=7, reasoning=3, tool_use_input=4)
