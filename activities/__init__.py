"""Temporal activities: every side effect of a promotion (database, subprocess, HTTP, crypto)."""
