"""Smoke tests of the real test peers (tests/support): each starts and does its basic job as the
features will use it."""
