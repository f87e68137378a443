"""Configs of e2."""
