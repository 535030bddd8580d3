"""Admin and report inputs out of range are a 400 with a clear message (never a 500), and change nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from proxy.ledger.models import ApiKey, KeyEvent
from tests.tenancy.conftest import Tenancy, envelope

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TEN_YEARS = "expires_in must be from 1 seconds to 3650 days"
MONTH = "grace_seconds must be from 0 seconds to 30 days"


@pytest.mark.parametrize(("body", "message"), [
    ({"team": "t", "expires_in": 1e300}, 'expires_in must be a duration such as "30d" or a whole number of seconds.'),
    ({"team": "t", "expires_in": 1.5}, 'expires_in must be a duration such as "30d" or a whole number of seconds.'),
    ({"team": "t", "expires_in": True}, 'expires_in must be a duration such as "30d" or a whole number of seconds.'),
    ({"team": "t", "expires_in": 10**30}, f"{TEN_YEARS}."),
    ({"team": "t", "expires_in": 0}, f"{TEN_YEARS}."),
    ({"team": "t", "expires_in": -5}, f"{TEN_YEARS}."),
    ({"team": "t", "expires_in": 3650 * 86400 + 1}, f"{TEN_YEARS}."),
    ({"team": "t", "expires_in": "99999999999w"}, "expires_in: '99999999999w' is longer than any date can hold."),
    ({"team": "t", "expires_in": "3651d"}, f"{TEN_YEARS}."),
    ({"team": "t", "expires_in": "9" * 5000 + "d"}, "expires_in: '" + "9" * 32 + "' is not a duration like 30d, "
                                                   "12h or 90m."),
    ({"team": "t", "name": "n" * 201}, "name must be at most 200 characters"),
    ({"team": "t" * 5000}, f"team '{'t' * 40}...' is longer than 200 characters."),
    ({"team": "t", "projects": ["p"] * 101}, "projects may hold at most 100 entries of at most 200 characters."),
    ({"team": "t", "models": ["m" * 201]}, "models may hold at most 100 entries of at most 200 characters."),
    ({"team": "t", "x" * 1000: 1}, f"Unknown field(s): {'x' * 40}...."),
])
def test_key_create_out_of_range_is_400(tenancy: Tenancy, body: dict[str, Any], message: str) -> None:
    with tenancy.sessions() as session:
        before = session.scalars(select(ApiKey.id)).all()
    reply = tenancy.client("admin").post("/v1/keys", json=body)
    assert reply.status_code == 400, reply.text
    assert envelope(reply) == {"code": 400, "status": "INVALID_ARGUMENT", "message": message}
    with tenancy.sessions() as session:
        assert session.scalars(select(ApiKey.id)).all() == before


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"grace_seconds": 1e300}', "rotate takes one optional field: grace_seconds, a whole number of seconds."),
    (b'{"grace_seconds": 2.5}', "rotate takes one optional field: grace_seconds, a whole number of seconds."),
    (b'{"grace_seconds": "1h"}', "rotate takes one optional field: grace_seconds, a whole number of seconds."),
    (b'{"grace_seconds": 100000000000000000000}', f"{MONTH}."),
    (b'{"grace_seconds": 2592001}', f"{MONTH}."),
    (b'{"grace_seconds": -1}', f"{MONTH}."),
    (b'{"grace_seconds": NaN}', "Invalid JSON payload received: NaN is not a number JSON allows."),
    (b'{"grace_seconds": Infinity}', "Invalid JSON payload received: Infinity is not a number JSON allows."),
])
def test_key_rotate_out_of_range_is_400(tenancy: Tenancy, raw: bytes, message: str) -> None:
    key_id, _ = tenancy.new_key("rotations")
    reply = tenancy.client("admin").post(f"/v1/keys/{key_id}:rotate", content=raw,
                                         headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert envelope(reply) == {"code": 400, "status": "INVALID_ARGUMENT", "message": message}
    with tenancy.sessions() as session:
        assert session.scalars(select(KeyEvent.action).where(KeyEvent.key_id == key_id)).all() == []


def test_the_longest_allowed_values_are_accepted(tenancy: Tenancy) -> None:
    admin = tenancy.client("admin")
    made = admin.post("/v1/keys", json={"team": "t", "name": "n" * 200, "expires_in": 3650 * 86400})
    assert made.status_code == 200, made.text
    rotated = admin.post(f"/v1/keys/{made.json()['id']}:rotate", json={"grace_seconds": 30 * 86400})
    assert rotated.status_code == 200, rotated.text


@pytest.mark.parametrize(("params", "message"), [
    ({"since": "0001-01-01T00:00:00+01:00"}, "'0001-01-01T00:00:00+01:00' is out of the range of dates in UTC"),
    ({"until": "9999-12-31T23:59:59-01:00"}, "'9999-12-31T23:59:59-01:00' is out of the range of dates in UTC"),
    ({"since": "2026-13-45"}, "'2026-13-45' is not a date (YYYY-MM-DD) or an ISO 8601 time"),
    ({"since": "9" * 3000}, f"'{'9' * 40}...' is not a date (YYYY-MM-DD) or an ISO 8601 time"),
    ({"by": "x" * 3000}, f"unknown grouping {'x' * 40}...: use any of job,team,key,model,project,location,day,week,"
                         "month,state,provider,deployment"),
    ({"team": [f"t{i}" for i in range(101)]}, "team and model may each be given at most 100 times."),
    ({"model": ["m"] * 101}, "team and model may each be given at most 100 times."),
])
def test_report_parameters_out_of_range_are_400(tenancy: Tenancy, params: dict[str, Any], message: str) -> None:
    reply = tenancy.client("admin").get("/v1/costs", params=params)
    assert reply.status_code == 400, reply.text
    assert envelope(reply) == {"code": 400, "status": "INVALID_ARGUMENT", "message": message}


def test_the_dashboard_refuses_a_range_it_cannot_draw(tenancy: Tenancy) -> None:
    with httpx.Client(base_url=tenancy.proxy.url, timeout=30) as browser:
        assert browser.post("/dashboard/login", data={"key": tenancy.keys["admin"]}).status_code == 303
        page = browser.get("/dashboard", params={"since": "0001-01-01", "until": "9999-12-31"})
        assert page.status_code == 400 and "Bad range: the page shows at most 3660 days at once." in page.text
        page = browser.get("/dashboard", params={"since": "2016-01-01", "until": "2026-01-08"})  # 3660 days
        assert page.status_code == 200 and 'id="total-cost"' in page.text
