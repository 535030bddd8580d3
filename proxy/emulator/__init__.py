"""Local stand-ins for Google: Vertex batchPredictionJobs, an OAuth2 token endpoint, and Cloud Storage."""
