"""The study's configs, grouped by experiment (E1-E8) and paper scale."""
