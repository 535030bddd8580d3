"""`shows_state`: the byte-level peek that lets a GET reply skip JSON parsing when the job's state did not change.

It may miss (the reply is then parsed), but it must never claim a state that the parsed JSON does not show.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers.vertex.passthrough import shows_state
from proxy.providers.vertex.states import JobState

NAMES = [state.name for state in JobState]
JOB = {
    "name": "projects/510528649030/locations/us-central1/batchPredictionJobs/3814889423749775360",
    "displayName": "nightly",
    "model": "publishers/google/models/gemini-2.5-flash",
    "state": "JOB_STATE_RUNNING",
    "createTime": "2026-01-01T00:00:00.123456Z",
    "labels": {"vbp-team": "a"},
}


@pytest.mark.parametrize("indent", [None, 2])
def test_a_plain_job_reply_is_read_without_parsing(indent: int | None) -> None:
    data = json.dumps(JOB, indent=indent).encode()
    assert shows_state(data, "JOB_STATE_RUNNING")
    assert not shows_state(data, "JOB_STATE_SUCCEEDED")
    assert not shows_state(data, "JOB_STATE_RUN")


@pytest.mark.parametrize("doc", [
    {**JOB, "state": 3},  # google-cloud-aiplatform's numeric enums
    {**JOB, "labels": {"state": "JOB_STATE_RUNNING"}, "state": "JOB_STATE_SUCCEEDED"},
    {"displayName": "state", "state": "JOB_STATE_RUNNING"},
    {"displayName": "caf\u00e9", "state": "JOB_STATE_RUNNING"},  # ensure_ascii escapes: parsed, not peeked
])
def test_unusual_replies_are_left_to_the_parser(doc: dict[str, Any]) -> None:
    assert not shows_state(json.dumps(doc).encode(), "JOB_STATE_RUNNING")


def test_an_escaped_key_is_left_to_the_parser() -> None:
    data = b'{"st\\u0061te": "JOB_STATE_SUCCEEDED", "labels": {"state": "JOB_STATE_RUNNING"}}'
    assert json.loads(data)["state"] == "JOB_STATE_SUCCEEDED"
    assert not shows_state(data, "JOB_STATE_RUNNING")


_KEYS = st.sampled_from(["state", "name", "labels", "displayName", 'x"state', "state ", "error", "s"])
_SCALARS = st.one_of(st.sampled_from(NAMES), st.integers(0, 11), st.text(max_size=12), st.none(), st.booleans())
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(doc=st.dictionaries(_KEYS, _VALUES, max_size=6), state=st.sampled_from(NAMES),
       indent=st.sampled_from([None, 0, 2]), ensure_ascii=st.booleans())
def test_never_claims_a_state_the_json_does_not_show(doc: dict[str, Any], state: str, indent: int | None,
                                                    ensure_ascii: bool) -> None:
    data = json.dumps(doc, indent=indent, ensure_ascii=ensure_ascii).encode()
    if shows_state(data, state):
        # Either the job's state is that one, or it shows none at all: neither is news for the ledger.
        assert json.loads(data).get("state") in (state, None)
