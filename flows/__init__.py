"""Prefect flows and tasks over delf_core: retries, caching, progress in the UI."""
