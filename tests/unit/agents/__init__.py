"""Unit tests of callfleet.agents."""
