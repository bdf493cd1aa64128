"""bwgym.agents."""
