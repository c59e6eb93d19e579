"""The HTTP API (FastAPI). It never imports torch: it only stores sweeps and publishes job ids."""
