"""Delivery to a real receiver on loopback: retries with the same webhook-id, Standard Webhooks signatures that the
reference library verifies, backoff then failed, redelivery, and the URL checked again at every delivery."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.webhooks.delivery import Attempt, Claimed, record_attempt, retry_delay
from proxy.webhooks.outbox import enqueue_event
from proxy.webhooks.registration import add_endpoint, list_deliveries, redeliver, remove_endpoint
from tests.webhooks.conftest import LOOPBACK, deliver_until, dispatcher
from tests.webhooks.receiver import Receiver


def test_a_failing_receiver_gets_each_event_once_with_the_same_id_and_valid_signatures(
        sessions: sessionmaker[Session]) -> None:
    with Receiver(fail_first=2) as receiver, Receiver() as other_team:
        with sessions.begin() as session:
            _, secret = add_endpoint(session, team="team-a", url=receiver.url, events=[], actor="t", policy=LOOPBACK)
            add_endpoint(session, team="team-b", url=other_team.url, events=[], actor="t", policy=LOOPBACK)
            event_id = enqueue_event(session, team="team-a", type="job.succeeded", data={"job": "j1"},
                                     dedupe_key="job.ended:1")
            # the same change seen again (another path, another replica): no second event
            assert enqueue_event(session, team="team-a", type="job.succeeded", data={"job": "j1"},
                                 dedupe_key="job.ended:1") is None
        [row] = deliver_until(sessions, dispatcher(sessions), lambda rows: rows[0].state == "delivered")
    assert (row.attempts, row.last_status, row.last_error) == (3, 204, None)
    assert [(r.headers["webhook-id"], r.status) for r in receiver.received] == [
        (event_id, 500), (event_id, 500), (event_id, 204)]
    [body] = receiver.verified(secret)
    assert body["type"] == "job.succeeded" and body["data"] == {"job": "j1"} and set(body) == {"type", "timestamp",
                                                                                               "data"}
    assert other_team.received == []  # another team's endpoint hears nothing of it


def test_an_endpoint_gets_only_the_types_it_asked_for(sessions: sessionmaker[Session]) -> None:
    with Receiver() as receiver:
        with sessions.begin() as session:
            _, secret = add_endpoint(session, team="team-a", url=receiver.url, events=["job.metered"], actor="t",
                                     policy=LOOPBACK)
            enqueue_event(session, team="team-a", type="job.failed", data={"job": "j"}, dedupe_key="a")
            metered = enqueue_event(session, team="team-a", type="job.metered", data={"cost_usd": "0.000727"},
                                    dedupe_key="b")
        deliver_until(sessions, dispatcher(sessions), lambda rows: rows[0].state == "delivered")
    assert [r.headers["webhook-id"] for r in receiver.received] == [metered]
    assert receiver.verified(secret)[0]["data"] == {"cost_usd": "0.000727"}


def test_retries_double_from_the_first_and_give_up_after_the_window() -> None:
    assert [retry_delay(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    # with a day's window, the 12th failure would wait past it: 12 tries in all, then failed
    start = utcnow()
    window = timedelta(days=1).total_seconds()
    now, state, tries = start, "pending", 0
    while state == "pending":
        tries += 1
        retry_at = now + timedelta(seconds=retry_delay(tries, 30))
        state = "failed" if retry_at > start + timedelta(seconds=window) else "pending"
        now = retry_at
    assert tries == 12


def test_a_delivery_that_keeps_failing_is_marked_failed_then_redelivered(sessions: sessionmaker[Session]) -> None:
    with Receiver(fail_first=1000) as receiver:
        with sessions.begin() as session:
            add_endpoint(session, team="team-a", url=receiver.url, events=[], actor="t", policy=LOOPBACK)
            event_id = enqueue_event(session, team="team-a", type="job.expired", data={}, dedupe_key="x")
        worker = dispatcher(sessions, webhook_give_up_seconds=1.0)
        [row] = deliver_until(sessions, worker, lambda rows: rows[0].state == "failed")
        assert row.last_status == 500 and row.last_error == "answered 500"
        # waits of 0.05, 0.1, 0.2, 0.4 s...: given up at the first try whose retry would fall past the window
        tries = row.attempts
        assert tries >= 2 and len(receiver.received) == tries
        assert row.next_attempt_at > row.scheduled_at + timedelta(seconds=1.0)
        assert row.last_attempt_at is not None
        assert row.last_attempt_at + timedelta(seconds=retry_delay(tries - 1, 0.05)) > row.scheduled_at
        with sessions() as session:
            [logged] = list_deliveries(session, failed_only=True)
        assert (logged["webhook_id"], logged["state"], logged["attempts"]) == (event_id, "failed", tries)
        receiver.fail_first = 0
        with sessions.begin() as session:
            assert redeliver(session, delivery_id=row.id)["state"] == "pending"
        [row] = deliver_until(sessions, worker, lambda rows: rows[0].state == "delivered")
    assert row.attempts == 1 and receiver.received[-1].headers["webhook-id"] == event_id
    with sessions() as session:
        assert list_deliveries(session, failed_only=True) == []


def test_the_url_is_checked_again_at_delivery(sessions: sessionmaker[Session]) -> None:
    """Registered while loopback was allowed; the setting is off now: nothing is sent, the try fails, refused."""
    with Receiver() as receiver:
        with sessions.begin() as session:
            add_endpoint(session, team="team-a", url=receiver.url, events=[], actor="t", policy=LOOPBACK)
            enqueue_event(session, team="team-a", type="job.failed", data={}, dedupe_key="y")
        worker = dispatcher(sessions, webhook_allow_loopback=False, webhook_give_up_seconds=0.1)
        [row] = deliver_until(sessions, worker, lambda rows: rows[0].state == "failed")
    assert receiver.received == []
    assert row.last_status is None
    assert row.last_error == ("refused: only https URLs are allowed (plain http only to loopback, with "
                              "VBP_WEBHOOK_ALLOW_LOOPBACK=true)")


def test_a_removed_endpoint_gets_nothing_more(sessions: sessionmaker[Session]) -> None:
    with Receiver() as receiver:
        with sessions.begin() as session:
            endpoint, _ = add_endpoint(session, team="team-a", url=receiver.url, events=[], actor="t",
                                       policy=LOOPBACK)
            enqueue_event(session, team="team-a", type="job.failed", data={}, dedupe_key="z")
        with sessions.begin() as session:
            assert remove_endpoint(session, endpoint_id=endpoint.id)
            assert enqueue_event(session, team="team-a", type="job.failed", data={}, dedupe_key="z2") is not None
        [row] = deliver_until(sessions, dispatcher(sessions), lambda rows: True)
    assert (row.state, row.last_error) == ("failed", "the endpoint was removed")
    assert receiver.received == []


def test_a_taken_over_claim_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        add_endpoint(session, team="team-a", url="http://127.0.0.1:9/", events=[], actor="t", policy=LOOPBACK)
        enqueue_event(session, team="team-a", type="job.failed", data={}, dedupe_key="w")
    stale = Claimed(id=1, token="not-the-token", message_id="m", body="{}", url="", secret="", attempts=0,
                    scheduled_at=utcnow())
    with sessions.begin() as session:
        assert record_attempt(session, claimed=stale, attempt=Attempt(204), now=utcnow(), first_retry=1,
                              give_up=10) is None
