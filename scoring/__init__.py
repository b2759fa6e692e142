"""Scoring a run: metric callbacks, stopping rules, noise estimation, divergence guards.
Sits above ``datamodules`` and below ``methods`` (a method may use a noise estimate)."""
