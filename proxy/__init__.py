"""Vertex Batch Proxy: a metering reverse proxy for Vertex AI batch prediction jobs."""
