"""The list filter: parsing, canonical rendering, evaluation, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers.vertex.filters import And, Compare, FilterError, Node, Not, Or, and_all, evaluate, parse, render

JOB = {
    "displayName": "my_job_42",
    "state": "JOB_STATE_SUCCEEDED",
    "createTime": "2026-05-18T10:00:00.123456Z",
    "startTime": "2026-05-18T10:00:02.000000Z",
    "labels": {"team": "search", "env": "prod"},
}


@pytest.mark.parametrize(("text", "canonical"), [
    ('state="JOB_STATE_SUCCEEDED"', '(state="JOB_STATE_SUCCEEDED")'),
    ("state != JOB_STATE_FAILED", '(state!="JOB_STATE_FAILED")'),
    ('display_name:"my_job_*"', '(display_name:"my_job_*")'),
    ("labels.team=search", '(labels.team="search")'),
    ("labels.team:*", "(labels.team:*)"),
    ('NOT display_name="x"', '(NOT (display_name="x"))'),
    ('-display_name="x"', '(NOT (display_name="x"))'),
    ('create_time>"2026-05-18T00:00:00Z"', '(create_time>"2026-05-18T00:00:00Z")'),
    ('labels.a=1 AND labels.b=2 OR labels.c=3', '((labels.a="1") AND ((labels.b="2") OR (labels.c="3")))'),
    ('(labels.a=1 AND labels.b=2) OR labels.c=3', '(((labels.a="1") AND (labels.b="2")) OR (labels.c="3"))'),
    ("display_name='it\\'s'", '(display_name="it\'s")'),
    ('display_name="say \\"hi\\""', '(display_name="say \\"hi\\"")'),
])
def test_parse_and_render(text: str, canonical: str) -> None:
    tree = parse(text)
    assert render(tree) == canonical
    assert parse(canonical) == tree


def test_or_binds_tighter_than_and_as_in_aip_160() -> None:
    assert parse("labels.a=1 AND labels.b=2 OR labels.c=3") == And(
        Compare(("labels", "a"), "=", "1"),
        Or(Compare(("labels", "b"), "=", "2"), Compare(("labels", "c"), "=", "3")),
    )


def test_blank_filter_matches_everything() -> None:
    assert parse("") is None
    assert parse("   ") is None
    assert evaluate(None, JOB) is True
    assert render(None) == ""


@pytest.mark.parametrize(("text", "matches"), [
    ('state="JOB_STATE_SUCCEEDED"', True),
    ('state="JOB_STATE_FAILED"', False),
    ('state!="JOB_STATE_FAILED"', True),
    ('display_name="my_job_42"', True),
    ('display_name:"my_job_*"', True),
    ('display_name:"other_*"', False),
    ('display_name="my_*_42"', True),
    ('display_name!="my_job_*"', False),
    ('create_time>"2026-05-18T00:00:00Z"', True),
    ('create_time>="2026-05-18T10:00:00.123456Z"', True),
    ('create_time<"2026-05-18T10:00:00.123456Z"', False),
    ('create_time<="2026-05-18T12:00:00+02:00"', False),   # 12:00+02:00 is 10:00:00Z, 0.123456 s before
    ('create_time="2026-05-18T10:00:00.123456Z"', True),
    ('create_time!="2026-05-18T10:00:00.123456Z"', False),
    ('end_time<"2030-01-01T00:00:00Z"', False),              # no endTime yet: no comparison holds
    ("labels.team=search", True),
    ('labels.team="other"', False),
    ("labels.team:*", True),
    ("labels.owner:*", False),
    ('labels.owner!="x"', True),
    ("labels.team=search AND labels.env=prod", True),
    ("labels.team=search AND labels.env=dev", False),
    ("labels.team=other OR labels.env=prod", True),
    ("NOT labels.team=search", False),
    ("-labels.team=other", True),
    ("(labels.team=other OR labels.env=prod) AND NOT state=JOB_STATE_FAILED", True),
])
def test_evaluate(text: str, matches: bool) -> None:
    assert evaluate(parse(text), JOB) is matches


def test_evaluate_accepts_states_as_numbers() -> None:
    assert evaluate(parse('state="JOB_STATE_SUCCEEDED"'), {**JOB, "state": 4}) is True
    assert evaluate(parse('state="JOB_STATE_RUNNING"'), {**JOB, "state": 4}) is False


def test_anding_a_team_clause_cannot_be_escaped() -> None:
    hostile = parse('labels.team="search" OR labels.team:*')
    team = parse('labels.team="billing"')
    combined = parse(render(and_all(hostile, team)))
    assert render(combined) == '(((labels.team="search") OR (labels.team:*)) AND (labels.team="billing"))'
    assert evaluate(combined, JOB) is False
    assert evaluate(combined, {**JOB, "labels": {"team": "billing"}}) is True
    assert and_all(None, team) == team
    assert and_all(None, None) is None


@pytest.mark.parametrize("text", [
    'display_name="unterminated',
    "display_name='unterminated",
    'display_name="trailing backslash\\',
    "(state=JOB_STATE_FAILED",
    "state=JOB_STATE_FAILED)",
    "((labels.a=1)",
    "()",
    "AND",
    "labels.a=1 AND",
    "labels.a=1 OR OR labels.b=2",
    "NOT",
    "labels.a=1 labels.b=2",             # juxtaposition is not accepted: AND must be spelled out
    "labels.a=1 and labels.b=2",         # keywords are upper case
    "state",
    "state=",
    "=x",
    "unknown_field=1",
    "labels=1",
    "labels.a.b=1",
    "labels.=1",
    "display_name<\"a\"",
    "state>JOB_STATE_FAILED",
    'state="JOB_STATE_NONSENSE"',
    'state="4"',
    'create_time>"yesterday"',
    'create_time>"2026-05-18"',
    'create_time>"2026-05-18T00:00:00"',   # no zone
    'create_time:"2026-05-18T00:00:00Z"',
    "display_name=x; DROP TABLE jobs",
    "display_name=`x`",
    "display_name=x\x00",
    "display_name={x}",
    "labels.a==1",
    "(" * 40 + "labels.a=1" + ")" * 40,
    "NOT " * 40 + "labels.a=1",
    "labels.a=" + "x" * 5000,
])
def test_hostile_filters_raise_filter_error(text: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('()"\'\\ -:=!<>*.ANDORTlabes_tmyidpwc0123JOB\n')), max_size=60))
def test_any_text_parses_or_raises_filter_error(text: str) -> None:
    try:
        tree = parse(text)
    except FilterError:
        return
    assert parse(render(tree)) == tree


_FIELDS = st.sampled_from([("display_name",), ("labels", "team"), ("labels", "x-y"), ("state",), ("create_time",)])
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def _comparisons(draw: st.DrawFn) -> Compare:
    field = draw(_FIELDS)
    if field == ("state",):
        return Compare(field, draw(st.sampled_from(["=", "!="])), draw(st.sampled_from(["JOB_STATE_RUNNING",
                                                                                        "JOB_STATE_FAILED"])))
    if field == ("create_time",):
        return Compare(field, draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])), "2026-05-18T00:00:00Z")
    return Compare(field, draw(st.sampled_from(["=", "!=", ":"])), draw(_TEXT))


_TREES: st.SearchStrategy[Node] = st.recursive(
    _comparisons(),
    lambda inner: st.one_of(st.builds(Not, inner), st.builds(And, inner, inner), st.builds(Or, inner, inner)),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(_TREES)
def test_render_round_trips_every_tree(tree: Node) -> None:
    assert parse(render(tree)) == tree
