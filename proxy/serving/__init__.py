"""Running `vbp serve`: uvicorn with the proxy's HTTP protocol and start-up tuning (`server`), and the C heap given
back to the system once a minute (`heap_trim`)."""
