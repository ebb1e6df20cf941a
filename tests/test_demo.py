"""`lbva demo` end to end at smoke-test size: every phase runs, the report lands, phases resume, and the policy
is scored on initial states it was not trained on."""

import json
from pathlib import Path

import pytest

from lbva import demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    import lbva.eval.collect as collect_mod
    import lbva.eval.rollout as rollout_mod

    seen = {"collect": [], "rollout": []}
    collect, rollout = collect_mod.collect, rollout_mod.rollout

    def spy_collect(*a, **kw):
        seen["collect"].append(kw["seed"])
        return collect(*a, **kw)

    def spy_rollout(*a, **kw):
        seen["rollout"].append(kw["seed"])
        return rollout(*a, **kw)

    out = tmp_path_factory.mktemp("demo") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(collect_mod, "collect", spy_collect)
        mp.setattr(rollout_mod, "rollout", spy_rollout)
        info = demo.run_demo(out, tasks=["reach-v3"], demos=2, episodes=1, max_steps=12, seed=3, progress=False,
                             overrides=["model.size=tiny", "trainer.max_steps=3", "data.embedded_vae_steps=3",
                                        "trainer.checkpoint_every_n_steps=3", "trainer.sample_every_n_steps=0",
                                        "trainer.progress_bar=false"])
    return out, info, seen


def test_every_phase_runs_and_the_report_names_each_variant(quick_demo):
    out, info, _ = quick_demo
    report = (out / "report.md").read_text()
    for variant in ("lbva (sync)", "lbva, no video context", "zero policy", "random policy"):
        assert f"\n| {variant} | " in report
    assert "nan" not in report.split() and "## Detail" not in report  # one table per question, "–" for unmeasured
    summary = json.loads((out / "summary.json").read_text())
    assert set(info["timings"]) == {"collect_s", "prepare_s", "train_s", "eval_s"} == set(summary["timings"])
    assert (out / "policy" / "lbva_policy.json").is_file()
    for marker in (".collected", ".prepared", ".trained"):
        assert (out / marker).is_file()


def test_evaluation_seeds_are_held_out_from_the_demonstrations(quick_demo):
    from lbva.eval.rollout import episode_seed

    _, _, seen = quick_demo
    [collect_seed] = seen["collect"]
    assert seen["rollout"] and all(s == collect_seed + demo.EVAL_SEED_OFFSET for s in seen["rollout"])
    trained = {episode_seed(collect_seed, "reach-v3", e) for e in range(50)}  # every try collection could make
    evaluated = {episode_seed(s, "reach-v3", e) for s in seen["rollout"] for e in range(20)}
    assert not trained & evaluated


def test_a_finished_run_resumes_without_redoing_phases(quick_demo, monkeypatch):
    import lbva.eval.collect as collect_mod
    import lbva.training.fit as fit_mod

    out, _, _ = quick_demo

    def boom(*a, **kw):
        raise AssertionError("a finished phase ran again")

    monkeypatch.setattr(collect_mod, "collect", boom)
    monkeypatch.setattr(fit_mod, "fit", boom)
    info = demo.run_demo(out, tasks=["reach-v3"], demos=2, episodes=1, max_steps=12, seed=3, progress=False,
                         overrides=["model.size=tiny", "trainer.max_steps=3", "data.embedded_vae_steps=3",
                                    "trainer.progress_bar=false"])
    assert (out / "report.md").is_file() and set(info["results"]) >= {"lbva (sync)", "zero policy"}


def test_ablations_only_selects_by_key_and_refuses_unknown_names():
    """--ablations-only trains and evaluates only the named ablations' variants; a wrong name is refused."""
    import argparse

    from lbva import demo_variants
    from lbva.config import load_config

    cfg = load_config("demo/metaworld")
    assert [ab.key for ab in demo_variants.ablations(cfg)] == list(demo_variants.ABLATION_KEYS)
    picked = demo._variants(cfg, ["forward-dynamics"])
    trained = {v.model_slug for v in picked if v.train}
    assert trained == {"objective_fdm_prob_0"}, trained  # not the noisy-history or layout models
    assert {dict(v.infer).get("mode") for v in picked} >= {"fdm_async"}
    assert {dict(v.infer).get("mode") for v in demo._variants(cfg, ["control-mode"])} >= {"naive_async", "fdm_async"}
    assert demo._variants(cfg, False) == list(demo.CORE)
    assert len(demo._variants(cfg, True)) > len(demo._variants(cfg, ["control-mode", "forward-dynamics"]))
    with pytest.raises(ValueError, match="video-denoising"):
        demo_variants.selected_ablations(cfg, ["fdm"])
    with pytest.raises(argparse.ArgumentTypeError, match="forward-dynamics"):
        demo._ablation_keys("control-mode,fdm")


def test_ablations_train_their_switches_and_report_a_table_each(quick_demo, monkeypatch):
    """--ablations on a finished run: three more models (each with its recipe switch), seven more evaluations,
    the core variants read back rather than run again, and one report table per ablation."""
    import lbva.eval.rollout as rollout_mod
    from lbva.config import load_config

    out, _, _ = quick_demo
    other = "shared" if load_config("demo/metaworld").model.layout == "mot" else "mot"  # the layout not in the recipe
    ran = []
    rollout = rollout_mod.rollout

    def spy(env, factory, *a, **kw):
        ran.append(factory)
        return rollout(env, factory, *a, **kw)

    monkeypatch.setattr(rollout_mod, "rollout", spy)
    info = demo.run_demo(out, tasks=["reach-v3"], demos=2, episodes=1, max_steps=12, seed=3, progress=False,
                         ablations=True,
                         overrides=["model.size=tiny", "trainer.max_steps=3", "data.embedded_vae_steps=3",
                                    "trainer.checkpoint_every_n_steps=3", "trainer.sample_every_n_steps=0",
                                    "trainer.progress_bar=false"])
    # the core four were evaluated by the fixture's run and are read back
    overrides = sorted(str(dict(f.overrides)) for f in ran)
    assert len(ran) == 7, overrides
    assert {"ablation_train_s", "ablation_eval_s"} <= set(info["timings"])
    for slug, key, value in ((f"model_layout_{other}", ("model", "layout"), other),
                             ("objective_noisy_history_prob_0", ("objective", "noisy_history_prob"), 0),
                             ("objective_fdm_prob_0", ("objective", "fdm_prob"), 0)):
        saved = json.loads((out / "ablations" / slug / "policy" / "lbva_policy.json").read_text())["config"]
        assert saved[key[0]][key[1]] == value
        assert (out / "ablations" / slug / ".trained").is_file()
    by_mode = {dict(f.overrides).get("mode"): f for f in ran}
    assert {"naive_async", "fdm_async"} <= set(by_mode)
    fdm_runs = [f.path for f in ran if dict(f.overrides).get("mode") == "fdm_async"]
    assert sorted(fdm_runs) == sorted([str(out / "policy"), str(out / "ablations" / "objective_fdm_prob_0" / "policy")])
    full = next(f for f in ran if dict(f.overrides).get("video_stop_sigma") == 0.0)
    assert dict(full.overrides)["video_steps"] > 3  # full denoising at partial's step size takes more steps
    report = (out / "report.md").read_text()
    for title in ("### Control mode", "### Forward-dynamics training", "### Noisy-history augmentation",
                  "### Video denoising", "### Action stream"):
        assert title in report
    for switch in ("`inference.mode=fdm_async`", "`objective.noisy_history_prob=0`", f"`model.layout={other}`",
                   "`inference.video_stop_sigma=0", "`objective.fdm_prob=0 inference.mode=fdm_async`"):
        assert switch in report
    assert (out / "prediction.png").is_file()


def test_peers_seeds_and_demo_counts_fill_one_table_each_with_intervals(quick_demo, monkeypatch):
    """--peers --seeds 2 --demo-counts 1,2 on a finished run: every unit of the plan is trained once and scored on
    the demo's held-out episodes; a peer's training-time budget is lbva's processor time at the peer's measured cost
    per step; the report pools seeds with Wilson intervals that match the raw episodes; a failed unit is reported
    and the rest still run; a second call redoes only what failed.

    Training is faked (a copy of the demo's policy for lbva, a record for the peers, a zero policy scoring them):
    LeRobot's own training of the peers is tested in tests/test_demo_peers.py."""
    import shutil

    import lbva.eval.peers as peers
    import lbva.eval.rollout as rollout_mod
    from lbva.demo_evidence import time_budget_steps
    from lbva.eval.intervals import format_rate
    from lbva.eval.rollout import PolicyFactory

    out, _, _ = quick_demo
    collect_and_prepare, train, failed = demo._collect_and_prepare, [], []
    rollout, eval_seeds = rollout_mod.rollout, []

    def copy_dataset(root, *a, **kw):  # other demo counts: the demo's own dataset stands in
        if root != out and not (root / ".prepared").is_file():
            root.mkdir(parents=True, exist_ok=True)
            for part in ("dataset", "cache"):
                shutil.copytree(out / part, root / part, dirs_exist_ok=True)
            for marker in (".collected", ".prepared"):
                (root / marker).write_text('{"seconds": 1.0}')
        return collect_and_prepare(root, *a, **kw)

    def fake_lbva(cfg, cache, policy_dir, strip=None):
        train.append(("lbva", str(policy_dir.parent)))
        shutil.copytree(out / "policy", policy_dir, dirs_exist_ok=True)

    def fake_peer(run):
        train.append((run.kind, run.output_dir, run.steps))
        if run.output_dir.endswith("demos_2/diffusion_seed1_time") and not failed:
            failed.append(run)
            raise RuntimeError("LeRobot's training of diffusion failed: killed by signal 9")
        # processor time: 0.2 s of start-up, then 0.5 s a step (the logged clock says so)
        return {"kind": run.kind, "steps": run.steps, "seed": run.seed, "seconds": 2.0, "cpu_seconds": 0.2 + 0.5 * run.steps,
                "losses": [[1, 0.9, 0.1, 0.1], [run.steps, 0.5, 0.9, 0.1 + 0.5 * (run.steps - 1)]],
                "policy": run.output_dir, "parameters": 1}

    def spy_rollout(*a, **kw):
        eval_seeds.append(kw["seed"])
        return rollout(*a, **kw)

    monkeypatch.setattr(demo, "_collect_and_prepare", copy_dataset)
    monkeypatch.setattr(demo, "_train_and_export", fake_lbva)
    monkeypatch.setattr(peers, "train_peer", fake_peer)
    monkeypatch.setattr(peers, "PeerPolicyFactory", lambda folder, emb: PolicyFactory("zero", "metaworld"))
    monkeypatch.setattr(rollout_mod, "rollout", spy_rollout)
    kwargs = dict(tasks=["reach-v3"], demos=2, episodes=1, max_steps=12, seed=3, progress=False, peers=True, seeds=2,
                  demo_counts=[1, 2], overrides=["model.size=tiny", "trainer.max_steps=3", "data.embedded_vae_steps=3",
                                                 "trainer.checkpoint_every_n_steps=3", "trainer.sample_every_n_steps=0",
                                                 "trainer.progress_bar=false"])
    info = demo.run_demo(out, **kwargs)

    ev = out / "evidence"
    assert sorted(t[1] for t in train if t[0] == "lbva") == sorted(
        str(p) for p in (ev / "demos_2" / "lbva_seed1", ev / "demos_1" / "lbva_seed0", ev / "demos_1" / "lbva_seed1"))
    peer_runs = {Path(f).name + ("@1" if "demos_1" in f else ""): steps for k, f, *steps in train if k != "lbva"}
    expected = {f"{p}_seed{k}_{b}" for p in ("act", "diffusion") for k in (0, 1) for b in ("steps", "time")}
    expected |= {f"{p}_seed{k}_steps@1" for p in ("act", "diffusion") for k in (0, 1)}
    assert set(peer_runs) == expected
    assert all(peer_runs[f"{p}_seed{k}_steps"] == [3] for p in ("act", "diffusion") for k in (0, 1))
    for k, folder in ((0, out), (1, ev / "demos_2" / "lbva_seed1")):  # lbva's processor time, less start-up, / 0.5 s
        lbva_cpu = json.loads((folder / ".trained").read_text())["cpu_seconds"]
        expected_steps = max(1, int((lbva_cpu - 0.2) / 0.5 + 1e-9))
        assert peer_runs[f"act_seed{k}_time"] == [expected_steps] == [time_budget_steps(lbva_cpu, 0.2, 0.5)]
    assert set(eval_seeds) == {3 + demo.EVAL_SEED_OFFSET}
    assert [f["unit"] for f in info["failures"]] == ["diffusion, 2 demos, seed +1, time budget"]

    # the pooled cell of lbva (sync), from the raw episodes of both seeds' evaluations
    episodes = [e for folder in (out, ev / "demos_2" / "lbva_seed1")
                for e in json.loads((folder / "eval" / "lbva__sync" / "results.json").read_text())["episodes"]]
    report = (out / "report.md").read_text()
    sync_row = next(line for line in report.splitlines() if line.startswith("| lbva (sync) | its recipe's steps | 2 |"))
    assert format_rate(sum(e["success"] for e in episodes), len(episodes)) in sync_row
    for heading in ("## lbva against LeRobot's ACT and Diffusion Policy", "## Success against the number of demonstrations",
                    "## Not measured", "| 1 demos per task | 2 demos per task |", "lbva (FDM-grounded async)"):
        assert heading in report
    assert "nan" not in report.split() and "killed by signal 9" in report
    for figure in ("evidence_success.png", "success_vs_demos.png", "peer_loss_curves.png", "success.png"):
        assert (out / figure).is_file() and f"]({figure})" in report

    # a second call trains and evaluates only the unit that failed
    train.clear(), eval_seeds.clear()
    again = demo.run_demo(out, **kwargs)
    assert [Path(f).name for _, f, *_ in train] == ["diffusion_seed1_time"] and len(eval_seeds) == 1
    assert not again["failures"]
