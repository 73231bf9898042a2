"""bench.scale's model: the throughput ceilings step N reports, and the CPU of a process tree."""

import os

from bench.scale import ceilings, descendants, summarise, used_between


def test_ceilings_are_cores_over_cpu_per_request_capped_by_one_prosody_core():
    c = ceilings(tier_us=500, prosody_us=200)
    assert c["prosody_cap"] == 5000  # single-threaded: one core, 1e6 / 200 us
    assert c["rest_only_uncapped"] == {4: 8000, 8: 16000, 16: 32000}
    assert c["rest_only"] == {4: 5000, 8: 5000, 16: 5000}
    assert c["with_prosody_uncapped"][4] == round(4e6 / 700)
    assert c["prosody_cap_at_cores"] == {"rest_only": 2.5, "with_prosody": 3.5}
    assert ceilings(0, 200) == {}


def test_a_process_born_between_snapshots_counts_from_zero():
    before = {"nginx": {1: (1.0, 0.5)}}
    after = {"nginx": {1: (1.5, 0.75), 2: (0.25, 0.0)}}
    assert used_between(before, after) == {"nginx": (0.75, 0.25)}


def test_descendants_starts_with_the_root():
    assert descendants(os.getpid())[0] == os.getpid()


def test_summary_takes_the_median_of_the_rounds_and_sums_the_rest_tier():
    runs = [{"setup": "two+nginx", "what": "IQ", "conns": 16, "rate": rate, "p50_ms": 1.0, "p99_ms": 2.0,
             "ok": 100, "errors": 0, "cpu_pct": {"others": 0},
             "cpu_us": {"http1": {"user": u, "sys": 10}, "http2": {"user": u, "sys": 10},
                        "nginx": {"user": 20, "sys": 30}, "prosody": {"user": 90, "sys": 10},
                        "postgres": {"user": 0, "sys": 0}, "wrk": {"total": 40}}}
            for rate, u in ((900, 100), (1000, 120), (1100, 140))]
    e = summarise(runs)["two+nginx IQ c16"]
    assert e["rate"] == 1000 and e["rates"] == [900, 1000, 1100]
    assert e["cpu_us"]["http1"] == {"user": 120, "sys": 10}
    assert e["tier_us"] == 130 + 130 + 50 and e["prosody_us"] == 100  # wrk and PostgreSQL are not the tier
    assert e["delivered"] is None
