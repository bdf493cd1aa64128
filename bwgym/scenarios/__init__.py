"""bwgym.scenarios."""
