"""What the project knows of the Vertex batchPredictionJobs API, shared by the proxy and the emulator."""
