"""Cost reports from the ledger: `vbp report`, `GET /v1/costs` and the `/dashboard` page."""
