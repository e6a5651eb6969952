"""Reusable helpers for tests that run the gateway in front of real peers."""
