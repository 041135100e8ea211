"""`spatialnav bench wm` runs end to end, small: the tiny test pipeline, one thread, one Euler step, best-of-2, no training or SSG timing."""

from __future__ import annotations

import math


def test_bench_wm_reports_imagine_best_of_n_and_targets(tiny_pipeline, capsys):
    from benchmarks import bench_wm

    out = bench_wm.run(tiny_pipeline, threads=(1,), repeats=1, steps=(1,), training=False, best_of=2, ssg=False)
    r = out["results"][0]
    for key in ("imagine_1_steps_s", "imagine_1_steps_fp32_s", "imagine_best_of_s"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    g = out["targets"]
    assert out["best_of"] == 2 and g["imagine_best_of_best_s"] == r["imagine_best_of_s"]
    assert g["imagine_best_of_met"] == (r["imagine_best_of_s"] <= bench_wm.TARGET_IMAGINE_S)
    assert "best-of-2 imagine" in capsys.readouterr().out
    assert out["ssg"] == {"skipped": "ssg=False", "threads": 1}
