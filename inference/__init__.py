"""The Airlock inference service: API, auth, job queue, SDXL engine, output store."""
