"""Test helpers: a real NATS JetStream for tests (see ``plugin``)."""
