"""bwgym.traces."""
