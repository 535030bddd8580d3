"""Budgets that hold before the money is spent: estimates, dry runs and reservations at create.

- `store`: the budgets themselves (set, list, remove) and what each has spent, reserved and has left.
- `estimate`: the cost range of a batch input (per line: input tokens and the most output it can produce).
- `inputs`: reading an input for an estimate (gs:// objects streamed and bounded in time; local files).
- `local_file`: `vbp estimate`'s local file, Vertex lines or an OpenAI-format batch file read as the door reads it.
- `reservation`: holding an estimate against every budget covering a create, in one transaction that cannot
  overspend across replicas; binding, settling and releasing it afterwards.
- `admission`: the create path's gate (estimate, then reserve, or refuse).
- `threshold`: the 80% crossing, recorded once per budget and period.
- `api`, `cli`: `/v1/budgets`, `/v1/estimates`, `vbp budgets`, `vbp estimate`.
"""
