"""Configs of e4."""
