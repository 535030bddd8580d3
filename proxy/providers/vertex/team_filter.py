"""Keeping a team's list call inside its own jobs: a team clause ANDed onto whatever filter the caller sent
(the query string itself is parsed, one `filter` at most, by proxy/providers/vertex/query.py).

The caller's filter is parsed and re-rendered fully parenthesised, so no text of theirs (OR, NOT, quotes,
parentheses) can widen the clause; a filter that does not parse is refused rather than passed on.
"""

from __future__ import annotations

from proxy.errors import InvalidArgument
from proxy.providers.vertex import filters
from proxy.providers.vertex.create_body import TEAM_LABEL, label_value


def team_clause(team: str) -> filters.Compare:
    return filters.Compare(("labels", TEAM_LABEL), "=", label_value(team))


def team_filter(caller_filter: str | None, team: str) -> str:
    """The filter to send upstream: the team clause AND the caller's own filter, if any."""
    try:
        caller = filters.parse(caller_filter) if caller_filter else None
    except filters.FilterError as exc:
        raise InvalidArgument(f"Invalid filter: {exc}") from None
    wanted = filters.and_all(team_clause(team), caller)
    rendered = filters.render(wanted)
    # What goes upstream must mean exactly the tree checked here; a filter whose rendering does not parse back
    # to it (one nested too deep once parenthesised, say) is refused rather than sent.
    try:
        same = filters.parse(rendered) == wanted
    except filters.FilterError:
        same = False
    if not same:
        raise InvalidArgument("Invalid filter: too complex to restrict to your team's jobs safely; simplify it.")
    return rendered

