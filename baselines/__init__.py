"""Baselines: pieces that register into :mod:`ibtpo.registry` (advantages, samplers)."""
