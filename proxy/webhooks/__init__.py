"""Completion webhooks: teams' endpoints, the outbox of events in the ledger, and their signed delivery.

- `registration`: endpoints (admins add, list and remove them) and the delivery log (list, redeliver);
- `url_safety`: which URLs may be called (no SSRF), checked at registration and again at every delivery;
- `signing`: Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`);
- `outbox`: `enqueue_event`, called in the transaction of the change an event reports (job states, metering);
- `delivery`: the background task of `vbp serve` that claims due deliveries and sends them, with backoff;
- `api` (`/v1/webhooks`, admin keys) and `cli` (`vbp webhooks`).
"""
