"""Shared rollout: one generation-backend interface, one tree structure, the samplers on top."""
