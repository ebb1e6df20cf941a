"""The evidence behind the demo's numbers: ``lbva demo --peers --seeds 3 --demo-counts 10,30``.

After the plain demo run (collect, prepare, train, evaluate) this adds, under ``<out>/evidence/``:

* **training seeds** (``--seeds N``): the demo's model trained again with ``trainer.seed`` = seed + 1, …, seed + N − 1
  on the same demonstrations; every seed's model is evaluated in sync mode and in FDM-grounded async mode (the
  demo's own ``fdm_async`` variant) on the same held-out episodes;
* **peers** (``--peers``): LeRobot's ACT and Diffusion Policy trained by LeRobot's own training code
  (:mod:`lbva.eval.peers`) on the same LeRobot dataset, once with lbva's optimiser-step budget and once with lbva's
  training time, for every seed, and evaluated in lbva's harness on the same episodes;
* **sample efficiency** (``--demo-counts 10,30``): lbva and the peers at the step budget, for every seed, on fewer
  demonstrations per task: the first n successful scripted episodes of the same seeded collection.

The training-time budget is measured in processor seconds (the machine this runs on may be shared, and wall time
would measure the other jobs too): a peer gets the optimiser steps that fit the processor time lbva's training of
the same seed took, at the start-up and cost per step measured in the peer's first step-budget run.

Work runs in order of what the tables need most (lbva's further seeds; each peer's first step-budget run, then its
training-time runs; the other demo counts; the peers' further step-budget runs, the most expensive), and every unit
leaves a marker, so an interrupted run loses at most the unit in progress. A unit that fails (say, the out-of-memory killer) is logged
with its reason, shown in the report and makes the command exit non-zero; the units after it still run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LBVA = "lbva"


@dataclass(frozen=True)
class Unit:
    """One trained policy of the evidence: lbva or a peer, on ``demos`` demonstrations per task, with training seed
    offset ``seed`` (0 is the demo's own seed), under a ``budget`` (peers: lbva's steps or lbva's time)."""

    kind: str
    demos: int
    seed: int
    budget: str = "steps"

    @property
    def name(self) -> str:
        budget = "" if self.kind == LBVA else f", {self.budget} budget"
        return f"{self.kind}, {self.demos} demos, seed +{self.seed}{budget}"

    def folder(self, out: Path, main_demos: int) -> Path:
        """``out`` itself for the demo's own model; else ``evidence/demos_<n>/<kind>_seed<k>[_<budget>]``."""
        if self.kind == LBVA and self.demos == main_demos and self.seed == 0:
            return out
        suffix = "" if self.kind == LBVA else f"_{self.budget}"
        return out / "evidence" / f"demos_{self.demos}" / f"{self.kind}_seed{self.seed}{suffix}"


def demos_root(out: Path, demos: int, main_demos: int) -> Path:
    """Where the dataset and latent cache of ``demos`` demonstrations per task live (the demo's own for its count)."""
    return out if demos == main_demos else out / "evidence" / f"demos_{demos}"


def plan(main_demos: int, demo_counts: Sequence[int], seeds: int, peers: Sequence[str]) -> list[Unit]:
    """Every unit to train and evaluate, most needed first; the demo's own model (main count, seed 0) is trained by
    the demo itself and not listed. A peer's first step-budget run comes before its training-time runs, whose cost
    per step it measures; the expensive step-budget runs of further seeds and counts come last."""
    counts = [n for n in dict.fromkeys(demo_counts) if n != main_demos]
    order: list[Unit] = [Unit(LBVA, main_demos, k) for k in range(1, seeds)]
    for p in peers:
        order += [Unit(p, main_demos, 0, "steps"), *(Unit(p, main_demos, k, "time") for k in range(seeds))]
    for n in counts:
        order += [Unit(LBVA, n, k) for k in range(seeds)]
        order += [Unit(p, n, 0, "steps") for p in peers]
    order += [Unit(p, main_demos, k, "steps") for k in range(1, seeds) for p in peers]
    order += [Unit(p, n, k, "steps") for n in counts for k in range(1, seeds) for p in peers]
    return order


def time_budget_steps(budget_seconds: float, startup_seconds: float, seconds_per_step: float) -> int:
    """The optimiser steps a peer can take in ``budget_seconds`` of training: its start-up (imports, dataset, model,
    saving) once, then ``seconds_per_step`` a step. At least 1."""
    if budget_seconds <= 0 or seconds_per_step <= 0:
        raise ValueError(f"the training-time budget ({budget_seconds} s) and the peer's cost per step "
                         f"({seconds_per_step} s) must be measured (> 0): train lbva and the peer's step-budget run first")
    return max(1, int((budget_seconds - max(0.0, startup_seconds)) / seconds_per_step))


def step_cost(train: dict) -> tuple[float, float]:
    """``(start-up seconds, seconds per step)`` of a finished peer run, in processor time: the slope of its
    logged processor clock between the first and last logged steps, the rest of its total being start-up."""
    points = [p for p in train.get("losses") or [] if len(p) >= 4]
    total, steps = float(train.get("cpu_seconds") or 0.0), int(train["steps"])
    if len(points) >= 2 and points[-1][0] > points[0][0]:
        per_step = (points[-1][3] - points[0][3]) / (points[-1][0] - points[0][0])
    else:
        per_step = total / steps
    return total - per_step * steps, per_step


def _marker(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_evidence(out: Path, cfg, make_cfg, tasks: Sequence[str], main_demos: int, demo_counts: Sequence[int],
                 seeds: int, peers: Sequence[str], episodes: int, max_steps: int, seed: int, progress: bool,
                 workers: int) -> dict[str, Any]:
    """Train and evaluate every unit of :func:`plan`; returns ``{"records", "failures", "timings", "lbva_runs"}``.

    ``cfg`` is the demo's main config; ``make_cfg(demos_root, train_dir, seed)`` the lbva config trained on the
    dataset and cache under ``demos_root`` into ``train_dir`` with ``trainer.seed = seed``. ``records`` hold one
    evaluated policy each (lbva units give two: sync and FDM-grounded async)."""
    from lbva import demo
    from lbva.demo_variants import SYNC
    from lbva.eval import peers as peer_mod

    eval_seed = seed + demo.EVAL_SEED_OFFSET
    fdm = fdm_async_variant(cfg)
    emb = cfg.embodiment.name
    step_budget = int(cfg.trainer.max_steps)
    units = plan(main_demos, demo_counts, seeds, peers)
    records: list[dict] = []
    failures: list[dict] = []
    timings = {"evidence_collect_s": 0.0, "evidence_lbva_train_s": 0.0, "evidence_lbva_eval_s": 0.0,
               "evidence_peer_train_s": 0.0, "evidence_peer_eval_s": 0.0}
    lbva_runs: dict[str, Path] = {}
    counted: set[Path] = set()

    def lbva_marker(n: int, k: int) -> dict:
        return _marker(Unit(LBVA, n, k).folder(out, main_demos) / ".trained")

    # the demo's own model, evaluated as the other seeds are (sync is read back from the demo's evaluation)
    main = Unit(LBVA, main_demos, 0)
    for unit in [main, *units]:
        folder = unit.folder(out, main_demos)
        root = demos_root(out, unit.demos, main_demos)
        try:
            if root != out and root not in counted:
                ucfg = make_cfg(root, root / "train", seed)
                c, p = demo._collect_and_prepare(root, ucfg, list(tasks), unit.demos, seed, progress, workers)
                timings["evidence_collect_s"] += c + p
                counted.add(root)
            if unit.kind == LBVA:
                ucfg = cfg if unit == main else make_cfg(root, folder / "train", seed + unit.seed)
                if unit != main:
                    if not demo._done(folder / ".trained"):
                        logger.info("evidence: training %s", unit.name)
                        demo.train_model(ucfg, root / "cache", folder)
                    timings["evidence_lbva_train_s"] += demo._seconds(folder / ".trained")
                    lbva_runs[f"seed +{unit.seed}" + ("" if unit.demos == main_demos else f", {unit.demos} demos")] = \
                        folder / "train"
                results = demo._evaluate(ucfg, folder, [SYNC, fdm], tasks, episodes, max_steps, eval_seed,
                                         progress, workers)
                train = _marker(folder / ".trained")
                for v in (SYNC, fdm):
                    entry = results[v.label]
                    if unit != main or v != SYNC:
                        timings["evidence_lbva_eval_s"] += entry["seconds"]
                    records.append(_record(unit, v.label, entry, train))
                continue
            # a peer
            if not demo._done(folder / ".trained"):
                if unit.budget == "steps":
                    steps, basis = step_budget, {}
                else:
                    steps, basis = _time_budget(unit, out, main_demos, lbva_marker)
                logger.info("evidence: training %s with LeRobot (%d steps)", unit.name, steps)
                run = peer_mod.PeerRun(unit.kind, str(root / "dataset"), str(folder), steps=steps, seed=seed + unit.seed)
                result = peer_mod.train_peer(run)
                folder.mkdir(parents=True, exist_ok=True)
                demo._mark(folder / ".trained", {**{k: v for k, v in result.items() if k != "run"}, **basis})
            train = _marker(folder / ".trained")
            timings["evidence_peer_train_s"] += float(train.get("seconds", 0.0))
            label = peer_mod.PEERS[unit.kind][1]
            settings = {"tasks": list(tasks), "episodes": episodes, "max_steps": max_steps, "seed": eval_seed,
                        "peer": unit.kind, "train_steps": train["steps"], "trained": train.get("seconds")}
            entry = demo.evaluate_policy(folder / "eval", f"{label}, {unit.name}",
                                         peer_mod.PeerPolicyFactory(train["policy"], emb), settings, tasks, episodes,
                                         max_steps, eval_seed, progress, workers,
                                         record_videos=1 if unit.seed == 0 and unit.demos == main_demos else 0)
            timings["evidence_peer_eval_s"] += entry["seconds"]
            records.append(_record(unit, label, entry, train))
        except Exception as e:  # one unit's failure (e.g. out of memory) must not cost the hours of the others
            logger.error("evidence: %s failed: %s", unit.name, e)
            failures.append({"unit": unit.name, "error": f"{type(e).__name__}: {e}"})
    (out / "evidence").mkdir(exist_ok=True)
    from lbva import strict_json

    (out / "evidence" / "results.json").write_text(strict_json.dumps(
        {"records": records, "failures": failures, "timings": timings}, indent=2))
    return {"records": records, "failures": failures, "timings": timings, "lbva_runs": lbva_runs}


def _time_budget(unit: Unit, out: Path, main_demos: int, lbva_marker) -> tuple[int, dict]:
    """Steps for a peer's training-time run: lbva's processor time for the same seed and demo count, at the cost per
    step (and start-up) measured in the peer's first step-budget run."""
    lbva = lbva_marker(unit.demos, unit.seed)
    first = _marker(Unit(unit.kind, main_demos, 0, "steps").folder(out, main_demos) / ".trained")
    if not lbva.get("cpu_seconds") or not first.get("cpu_seconds"):
        raise RuntimeError(f"{unit.name} needs the processor time of lbva's training of seed +{unit.seed} and of the "
                           f"{unit.kind} step-budget run of seed +0; one has not finished (or its marker predates "
                           "processor times: delete it to train again)")
    startup, per_step = step_cost(first)
    budget = float(lbva["cpu_seconds"])
    steps = time_budget_steps(budget, startup, per_step)
    return steps, {"budget_seconds": budget, "budget_clock": "cpu", "startup_s": startup, "cost_per_step_s": per_step}


def _record(unit: Unit, label: str, entry: dict, train: dict) -> dict:
    return {"policy": label, "kind": unit.kind, "budget": unit.budget, "demos": unit.demos, "seed": unit.seed,
            "summary": entry["summary"], "eval_seconds": entry.get("seconds", 0.0),
            "train": {k: train.get(k) for k in ("steps", "seconds", "cpu_seconds", "budget_seconds", "budget_clock")},
            "losses": train.get("losses")}


def fdm_async_variant(cfg):
    """The demo's FDM-grounded async variant of its main model (whatever the demo's ablations define it as)."""
    from lbva.demo_variants import ablations

    for ab in ablations(cfg):
        for _, _, v in ab.rows:
            if v.kind == LBVA and not v.train and dict(v.infer).get("mode") == "fdm_async":
                return v
    raise LookupError("the demo defines no FDM-grounded async variant of its main model (inference.mode=fdm_async)")


# ---------------------------------------------------------------------------------------------------------------
# The report's evidence tables


@dataclass
class Pool:
    """The episodes of one table row pooled over its training seeds."""

    successes: dict[str, int]  # task -> successful episodes, and "mean" -> over all tasks
    episodes: dict[str, int]
    seed_rates: list[tuple[int, float]]  # (seed offset, mean success of that seed's model)
    steps: list[int]
    train_seconds: list[float]
    train_cpu_seconds: list[float]

    @property
    def seeds(self) -> int:
        return len(self.seed_rates)


def pool(records: Sequence[dict], policy: str, budget: str, demos: int, tasks: Sequence[str]) -> Pool | None:
    """The row of ``policy`` under ``budget`` on ``demos`` demonstrations per task, pooled over seeds (None: no
    record). A task's successes are its success rate times its episodes (both stored per evaluation)."""
    mine = sorted((r for r in records if r["policy"] == policy and r["budget"] == budget and r["demos"] == demos),
                  key=lambda r: r["seed"])
    if not mine:
        return None
    successes = dict.fromkeys([*tasks, "mean"], 0)
    episodes = dict.fromkeys([*tasks, "mean"], 0)
    seed_rates = []
    for r in mine:
        k_all = n_all = 0
        for t in tasks:
            row = r["summary"].get(t, {})
            n = int(row.get("episodes", 0) or 0)
            k = round(float(row.get("success_rate", 0.0) or 0.0) * n)
            successes[t] += k
            episodes[t] += n
            k_all, n_all = k_all + k, n_all + n
        successes["mean"] += k_all
        episodes["mean"] += n_all
        seed_rates.append((r["seed"], k_all / n_all if n_all else float("nan")))
    train = [r.get("train") or {} for r in mine]
    return Pool(successes, episodes, seed_rates, [int(t["steps"]) for t in train if t.get("steps")],
                [float(t["seconds"]) for t in train if t.get("seconds")],
                [float(t["cpu_seconds"]) for t in train if t.get("cpu_seconds")])


def _cell(p: Pool, task: str) -> str:
    from lbva.eval.intervals import format_rate

    n = p.episodes.get(task, 0)
    return format_rate(p.successes[task], n) if n else "–"


def _versus(p: Pool, ref: Pool | None) -> str:
    """The difference of mean success to the reference row in points, its 95 % interval, ▲/▼ when it excludes 0."""
    from lbva.eval.intervals import difference_interval

    if ref is None or p is ref or not p.episodes["mean"] or not ref.episodes["mean"]:
        return "reference" if p is ref else "–"
    d, low, high = difference_interval(p.successes["mean"], p.episodes["mean"], ref.successes["mean"],
                                       ref.episodes["mean"])
    mark = " ▲" if low > 0 else " ▼" if high < 0 else ""
    return f"{100 * d:+.0f} [{100 * low:+.0f}, {100 * high:+.0f}]{mark}"


def _minutes(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values) / 60:.0f}" if values else "–"


def _steps(values: Sequence[int]) -> str:
    if not values:
        return "–"
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"


def row_specs(records: Sequence[dict]) -> list[tuple[str, str, str]]:
    """(policy, budget, what the budget means) of every row, lbva's first, in a fixed order."""
    from lbva.eval.peers import PEERS

    lbva_rows = list(dict.fromkeys(r["policy"] for r in records if r["kind"] == LBVA))
    rows = [(p, "steps", "its recipe's steps") for p in lbva_rows]
    for kind, (_, label) in PEERS.items():
        rows += [(label, "steps", "lbva's steps"), (label, "time", "lbva's training time")]
    return rows


def evidence_tables(records: Sequence[dict], failures: Sequence[dict], tasks: Sequence[str], main_demos: int,
                    seeds: int, step_budget: int) -> list[str]:
    """The report's sections for the peers / seeds table and the sample-efficiency table (markdown lines)."""
    lines: list[str] = []
    specs = row_specs(records)
    pools = {(p, b): pool(records, p, b, main_demos, tasks) for p, b, _ in specs}
    ref = pools.get((specs[0][0], "steps")) if specs else None
    lines += [f"## lbva against LeRobot's ACT and Diffusion Policy ({main_demos} demonstrations per task)", "",
              f"Every row is trained on the same LeRobot dataset and scored on the same held-out episodes. Cells: "
              f"success over the episodes of all its training seeds (up to {seeds}) and the 95 % Wilson interval. "
              f"'vs {specs[0][0] if specs else 'lbva'}': the difference in mean success, in points, with its 95 % "
              "interval (Newcombe); ▲/▼ mark a difference the interval does not cover 0 for. Budgets: lbva's "
              f"optimiser steps ({step_budget}), or lbva's training time of the same seed (in processor time; the "
              "steps that fit it at the peer's measured cost per step). Training time: mean per seed, minutes of "
              "processor time (the whole training process, 2 cores) and of wall time.", "",
              "| policy | budget | seeds | " + " | ".join(tasks) + " | mean | vs " + (specs[0][0] if specs else "lbva")
              + " | seed means | steps | training time (CPU / wall min) |",
              "|---|---|---:|" + "---:|" * (len(tasks) + 1) + "---:|---|---:|---:|"]
    for policy, budget, meaning in specs:
        p = pools[(policy, budget)]
        if p is None:
            lines.append(f"| {policy} | {meaning} | 0 | " + " | ".join("not run" for _ in tasks) + " | – | – | – | – | – |")
            continue
        seed_means = ", ".join(f"{100 * r:.0f}" for _, r in p.seed_rates) + " %"
        lines.append(f"| {policy} | {meaning} | {p.seeds} | " + " | ".join(_cell(p, t) for t in tasks)
                     + f" | **{_cell(p, 'mean')}** | {_versus(p, ref)} | {seed_means} | {_steps(p.steps)} | "
                     f"{_minutes(p.train_cpu_seconds)} / {_minutes(p.train_seconds)} |")
    lines.append("")
    counts = sorted({r["demos"] for r in records})
    if len(counts) > 1:
        lines += ["## Success against the number of demonstrations", "",
                  "Mean success over all tasks, pooled over training seeds (their number in brackets), with its 95 % "
                  f"Wilson interval; every policy at lbva's optimiser-step budget ({step_budget}). The last column is "
                  f"the change from {counts[0]} to {counts[-1]} demonstrations per task with its 95 % interval "
                  "(▲/▼: outside 0).", "",
                  "| policy | " + " | ".join(f"{n} demos per task" for n in counts) + " | change |",
                  "|---|" + "---:|" * (len(counts) + 1)]
        for policy, budget, _ in specs:
            if budget != "steps":
                continue
            cells, ps = [], []
            for n in counts:
                p = pool(records, policy, "steps", n, tasks)
                ps.append(p)
                cells.append(f"{_cell(p, 'mean')} ({p.seeds})" if p else "not run")
            change = _versus(ps[-1], ps[0]) if ps[0] and ps[-1] else "–"
            lines.append(f"| {policy} | " + " | ".join(cells) + f" | {change} |")
        lines += ["", "![success against demonstrations](success_vs_demos.png)", ""]
    if failures:
        lines += ["## Not measured", "", "These units failed; their rows hold fewer seeds (or none):", ""]
        lines += [f"- {f['unit']}: {f['error']}" for f in failures]
        lines.append("")
    return lines


def evidence_figures(records: Sequence[dict], tasks: Sequence[str], main_demos: int, out: Path) -> list[str]:
    """Success per task with intervals for every row (``evidence_success.png``), success against demonstrations
    (``success_vs_demos.png``) and the peers' LeRobot loss curves (``peer_loss_curves.png``); returns their names."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from lbva.demo_figures import style_loss_axes
    from lbva.eval.intervals import wilson_interval
    from lbva.eval.report import plot_rates

    drawn = []
    series = {}
    for policy, budget, meaning in row_specs(records):
        p = pool(records, policy, budget, main_demos, tasks)
        if p is None:
            continue
        values = []
        for t in [*tasks, "mean"]:
            k, n = p.successes[t], p.episodes[t]
            values.append((k / n, *wilson_interval(k, n)) if n else None)
        series[f"{policy}, {meaning}"] = values
    if series:
        plot_rates([*tasks, "mean"], series, out / "evidence_success.png",
                   f"success on held-out episodes, {main_demos} demonstrations per task (95 % Wilson intervals)",
                   ylabel="success rate")
        drawn.append("evidence_success.png")
    counts = sorted({r["demos"] for r in records})
    if len(counts) > 1:
        fig, ax = plt.subplots(figsize=(6.5, 4.0))
        for policy, budget, _ in row_specs(records):
            if budget != "steps":
                continue
            xs, ys, lo, hi = [], [], [], []
            for n in counts:
                p = pool(records, policy, "steps", n, tasks)
                if p is None or not p.episodes["mean"]:
                    continue
                k, m = p.successes["mean"], p.episodes["mean"]
                low, high = wilson_interval(k, m)
                xs.append(n), ys.append(k / m), lo.append(k / m - low), hi.append(high - k / m)
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=policy)
        ax.set_xticks(counts)
        ax.set_xlabel("demonstrations per task")
        ax.set_ylabel("mean success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.set_title("success against demonstrations (95 % Wilson intervals, seeds pooled)", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "success_vs_demos.png", dpi=110)
        plt.close(fig)
        drawn.append("success_vs_demos.png")
    curves = [r for r in records if r["kind"] != LBVA and r.get("losses")]
    if curves:
        kinds = list(dict.fromkeys(r["kind"] for r in curves))
        fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.8), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for r in curves:
                if r["kind"] == kind and r["demos"] == main_demos:
                    steps, loss = [p[0] for p in r["losses"]], [p[1] for p in r["losses"]]
                    ax.plot(steps, loss, linewidth=1, label=f"{r['budget']} budget, seed +{r['seed']}")
            style_loss_axes(ax, f"{next(c['policy'] for c in curves if c['kind'] == kind)}: LeRobot's training loss")
        fig.tight_layout()
        fig.savefig(out / "peer_loss_curves.png", dpi=110)
        plt.close(fig)
        drawn.append("peer_loss_curves.png")
    return drawn
