"""Synthetic generator: determinism, calibration against the fitted data, refitting."""

import json

import numpy as np
import pytest

from traces import synthetic
from traces.formats import load
from traces.ops import resample
from traces.paths import list_traces, trace_dir
from traces.trace import TraceError

ROOT = trace_dir()
needs_traces = pytest.mark.skipif(ROOT is None, reason="no trace directory (shared/traces)")


def test_same_seed_same_trace_other_seed_differs():
    a = synthetic.generate("challenge-medium", 300, seed=5)
    b = synthetic.generate("challenge-medium", 300, seed=5)
    c = synthetic.generate("challenge-medium", 300, seed=6)
    assert np.array_equal(a.rates_mbps, b.rates_mbps)
    assert not np.array_equal(a.rates_mbps, c.rates_mbps)
    assert a.duration_s == pytest.approx(300)


def test_committed_params_name_their_sources():
    params = json.loads(synthetic.PARAMS_PATH.read_text())
    assert synthetic.DEFAULT_PROFILE in params["profiles"]
    for name, prof in params["profiles"].items():
        assert prof["source"]["datasets"] == synthetic.PROFILE_SOURCES[name][0]
        P = np.array(prof["transitions"])
        assert np.allclose(P.sum(axis=1), 1, atol=1e-4)
    assert "dashlet" in params["swipe"]["source"]


@pytest.mark.parametrize("profile", sorted(synthetic.PROFILE_SOURCES))
def test_calibration_matches_fitted_statistics(profile):
    p = synthetic.profiles()[profile]
    tr = synthetic.generate(profile, duration_s=4000 * p["step_s"], seed=11)
    got = synthetic.summary_stats(resample(tr, p["step_s"]).rates_mbps)
    want = p["fitted_on"]
    assert got["mean_mbps"] == pytest.approx(want["mean_mbps"], rel=0.12)
    assert got["median_mbps"] == pytest.approx(want["median_mbps"], rel=0.15)
    assert got["p95_mbps"] == pytest.approx(want["p95_mbps"], rel=0.2)
    assert got["outage_share"] == pytest.approx(want["outage_share"], abs=0.02)
    assert got["lag1_autocorr"] > 0.8 * want["lag1_autocorr"]


@needs_traces
def test_refit_reproduces_committed_default_profile():
    datasets, step_s, bands = synthetic.PROFILE_SOURCES[synthetic.DEFAULT_PROFILE]
    traces = [load(f) for d in datasets for f in list_traces(d)]
    fresh = synthetic.fit_profile(traces, step_s, bands)
    committed = synthetic.profiles()[synthetic.DEFAULT_PROFILE]
    assert np.allclose(fresh["transitions"], committed["transitions"], atol=1e-5)
    assert fresh["fitted_on"]["mean_mbps"] == pytest.approx(committed["fitted_on"]["mean_mbps"])
    # Sanity against PROVENANCE: medium per-file means 1.49 to 1.69 Mbps.
    assert 1.49 <= committed["fitted_on"]["mean_mbps"] <= 1.69


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(TraceError, match="expected one of .*challenge-medium"):
        synthetic.generate("nope", 10)


def test_fit_needs_data():
    with pytest.raises(TraceError, match="no traces"):
        synthetic.fit_profile([], 1.0)
