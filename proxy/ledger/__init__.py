"""The ledger: the SQL tables, the engine and migrations, jobs, the job index, the request log, reconciliation."""
