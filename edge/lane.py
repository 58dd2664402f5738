"""Lane daemon (placeholder until the lane module lands)."""
