"""Shared pieces of the Deep Image Prior family: networks, the fitting loop, stopping rules."""
