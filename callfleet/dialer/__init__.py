"""Campaigns, contacts, pacing, calling windows, retries, do-not-call, state (issue 5)."""
