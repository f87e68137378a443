"""The depth-divergence study (arXiv 2306.02701): see README.md beside this file."""
