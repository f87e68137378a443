"""Configs of e3."""
