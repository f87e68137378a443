"""Configs of e1."""
