"""Helpers that run real services (ZooKeeper) for the integration tests."""
