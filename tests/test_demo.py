"""`lbva demo` end to end at smoke-test size: every phase runs, the report lands, phases resume, and the policy
is scored on initial states it was not trained on."""

import json

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
        assert f"| {variant} | reach-v3 |" in report
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
