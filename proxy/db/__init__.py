"""The SQL ledger: models, engine and migrations."""
