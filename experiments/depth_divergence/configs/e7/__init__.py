"""Configs of e7."""
