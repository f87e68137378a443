"""Configs of paper scale."""
