"""Bandwidth and swipe traces: one in-memory trace type, loaders per public format, a
calibrated synthetic generator, and the default trace directory lookup.

Entry points: ``load`` (one file, any format), ``open_trace`` (a run config's trace spec,
synthetic fallback), ``trace_hash`` (run metadata); swipe data in ``traces.swipe``.
"""

from traces.formats import load
from traces.paths import open_trace, trace_dir, trace_hash
from traces.trace import Trace, TraceError

__all__ = ["Trace", "TraceError", "load", "open_trace", "trace_dir", "trace_hash"]
