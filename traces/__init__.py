"""Bandwidth and swipe traces: one in-memory trace type, loaders per public format, a
calibrated synthetic generator, and the default trace directory lookup."""

from traces.trace import Trace, TraceError

__all__ = ["Trace", "TraceError"]
