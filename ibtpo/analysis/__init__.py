"""Analyses over checkpoints: branching statistics (table 3)."""
