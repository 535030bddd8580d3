"""`make soak`: the proxy under hours-like load, faults and a database restart; see `bench.soak.run`."""
