"""The spatialnav CLI: Hydra composition, readable errors, eval end to end, dispatcher."""

from __future__ import annotations

import json

import pytest

from agent import cli


def test_unknown_key_is_a_clear_error(capsys):
    assert cli.main(["eval", "foo=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'foo'" in err
    assert "n_episodes" in err and "agent=" in err  # lists valid keys and groups
    assert "Traceback" not in err

    assert cli.main(["eval", "env.widht=64"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'env.widht'" in err and "width" in err

    assert cli.main(["eval", "agent=nope"]) == 2
    err = capsys.readouterr().err
    assert "agent/nope" in err and "oracle" in err and "Traceback" not in err


def test_compose_overrides_aliases_and_presets(capsys):
    cfg = cli.compose_config(["agent=oracle", "n=7", "out=runs/x", "env=tiny"])
    assert cfg.agent.name == "oracle" and cfg.n_episodes == 7 and cfg.out_dir == "runs/x"
    assert cfg.env.width == 32 and cli.env_kwargs(cfg)["height"] == 32
    assert cli.agent_kwargs(cfg) == {"stop_distance": None}
    dbg = cli.compose_config(["experiment=debug"])
    assert dbg.env.width == 32 and dbg.n_episodes == 2 and dbg.task.max_episode_steps == 100
    assert cli.main(["eval", "experiment=acceptance", "--cfg"]) == 0
    assert "name: oracle" in capsys.readouterr().out


def test_eval_end_to_end(tmp_path, nav_episode_file, capsys):
    out = tmp_path / "oracle"
    rc = cli.main(["eval", "agent=oracle", "split=val", "n_episodes=2", f"out_dir={out}", "env=tiny",
                   f"episodes={nav_episode_file}", "progress=false"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_episodes"] == 2 and summary["agent"] == "oracle"
    assert summary["success"] == 1.0
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 2
    printed = capsys.readouterr().out
    assert "success" in printed and "95% CI" in printed


def test_dispatcher_missing_module_and_bench(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "later", ("world_model.not_written_yet:main", "comes later"))
    assert cli.main(["later"]) == 2
    err = capsys.readouterr().err
    assert "world_model.not_written_yet" in err and "not written yet" in err

    assert cli.main(["bench", "no_such_bench"]) == 2
    assert "bench_no_such_bench.py does not exist" in capsys.readouterr().err

    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("eval", "episodes", "demo", "bench", "collect", "train", "imagine", "eval-wm"):
        assert name in out


def test_bench_runs_a_benchmark_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench_toy.py").write_text("def run(n=3):\n    return {'n': n, 'ok': True}\n")
    monkeypatch.setattr(cli, "BENCH_DIR", tmp_path)
    assert cli.main(["bench", "toy", "bench.kwargs.n=5"]) == 0
    assert "'n': 5" in capsys.readouterr().out
    assert cli.main(["bench", "toy", "bench.kwargs.m=5"]) == 2
    assert "takes no ['m']" in capsys.readouterr().err


def test_bad_values_are_reported_not_raised(tmp_path, capsys):
    rc = cli.main(["eval", "split=nosuch", f"out_dir={tmp_path}", "n=1", "env=tiny", "progress=false"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "Traceback" not in err


def test_episodes_subcommand_writes_a_loadable_file(tmp_path, capsys):
    from envs.episodes import load_episodes

    out = tmp_path / "val1.json.gz"
    assert cli.main(["episodes", "split=val", "n=1", f"out={out}", "progress=false"]) == 0
    eps = load_episodes(out)
    assert len(eps) == 1 and eps[0].scene_id.startswith("procgen/val/")
    assert str(out) in capsys.readouterr().out


def test_compare_is_a_paired_bootstrap_over_shared_episodes(tmp_path, capsys):
    from agent.comparison import paired_comparison

    # 10 shared episodes: A alone solves 3, B alone 1, both 2; B also ran one episode A did not
    sa = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    sb = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    rows_a = [{"episode_id": f"e{i}", "success": s, "spl": 0.5 * s} for i, s in enumerate(sa)]
    rows_b = [{"episode_id": f"e{i}", "success": s, "spl": 0.4 * s} for i, s in enumerate(sb)] + \
             [{"episode_id": "extra", "success": 1, "spl": 1.0}]
    res = paired_comparison(rows_a, rows_b, n_boot=2000)
    assert res["n_episodes"] == 10 and res["only_in_b"] == 1
    s = res["success"]
    assert (s["only_a"], s["only_b"], s["both"]) == (3, 1, 2)
    assert s["diff"] == pytest.approx(0.2) and s["ci95"][0] < 0.2 < s["ci95"][1]
    assert res["spl"]["diff"] == pytest.approx(0.5 * 0.5 - 0.4 * 0.3)
    same = paired_comparison(rows_a, rows_a, n_boot=100)["success"]
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="share no episode_id"):
        paired_comparison(rows_a, [{"episode_id": "x", "success": 1, "spl": 1}])
    for name, rows in (("a", rows_a), ("b", rows_b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["compare", f"compare.dirs=[{tmp_path / 'a'},{tmp_path / 'b'}]", f"out_dir={tmp_path}"]) == 0
    assert "only A 3, only B 1, both 2" in capsys.readouterr().out
    assert json.loads((tmp_path / "compare.json").read_text())["success"]["only_a"] == 3
    assert cli.main(["compare", f"compare.dirs=[{tmp_path / 'a'}]"]) == 2


def test_compare_pairs_eval_wm_samples(tmp_path, capsys):
    # eval-wm samples.jsonl: paired by sample_id; a skipped sample (None) leaves that metric only
    hits_a = [True, True, False, False, True]
    hits_b = [False, True, False, False, False]
    for name, hits in (("a", hits_a), ("b", hits_b)):
        rows = [{"sample_id": f"s{i}", "status": "ok", "if": h, "if_sd02": h, "if_final": not h, "sd": 0.5 - 0.1 * h,
                 "clip_score": 0.2, "psnr": 17.0, "ssim": 0.3} for i, h in enumerate(hits)]
        rows[3]["sd"] = None
        (tmp_path / name).mkdir()
        (tmp_path / name / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["compare", f"compare.dirs=[{tmp_path / 'a'},{tmp_path / 'b'}]", f"out_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "5 shared samples" in out and "if: A 0.600, B 0.200" in out and "only A 2, only B 0, both 1" in out
    res = json.loads((tmp_path / "compare.json").read_text())
    assert res["id_key"] == "sample_id" and res["sd"]["n"] == 4 and res["sd"]["diff"] == pytest.approx(-0.05)
    assert res["clip_score"]["diff"] == 0 and "only_a" not in res["clip_score"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "episodes.jsonl").write_text(json.dumps({"episode_id": "e0", "success": 1, "spl": 1}) + "\n")
    assert cli.main(["compare", f"compare.dirs=[{tmp_path / 'a'},{tmp_path / 'c'}]"]) == 2  # different kinds
    assert cli.main(["compare", f"compare.dirs=[{tmp_path / 'a'},{tmp_path / 'b'}]", "compare.metrics=[nope]"]) == 2


def test_eval_agents_writes_its_table_into_out_dir_and_leaves_docs_alone(tmp_path, nav_episode_file, monkeypatch,
                                                                           capsys):
    # Run from a folder that has a docs/results.md: by default only out_dir is written.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    docs = tmp_path / "docs" / "results.md"
    docs.write_text("# Results\n\nhand-written tables\n")
    args = ["eval", "agents=[random,oracle]", "n_episodes=1", f"episodes={nav_episode_file}",
            "progress=false", "task.max_episode_steps=5"]
    assert cli.main([*args, "out_dir=ev"]) == 0
    assert docs.read_text() == "# Results\n\nhand-written tables\n"
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["results.md"]
    table = (tmp_path / "ev" / cli.RESULTS_FILE).read_text()
    assert "| random | 1 |" in table and "| oracle (privileged) | 1 |" in table
    assert "spatialnav eval agents=[random,oracle]" in table and "out_dir=ev" in table
    # Asked for (results_md=...): the same block goes into that page too, the rest of the page kept.
    assert cli.main([*args, "out_dir=ev2", "results_md=docs/results.md"]) == 0
    text = docs.read_text()
    assert text.startswith("# Results\n\nhand-written tables\n") and "| random | 1 |" in text
    assert (tmp_path / "ev2" / cli.RESULTS_FILE).exists()
