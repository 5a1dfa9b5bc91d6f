"""FastAPI control plane and dashboard pages (issue 5 and later)."""
