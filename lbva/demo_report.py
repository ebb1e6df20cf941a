"""``report.md`` of ``lbva demo`` (:func:`write_demo_report`): one table per question with 95 % intervals, a reading
of the results, the time of every phase, the figures and the episode videos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lbva import strict_json
from lbva.demo_variants import CORE, SYNC, selected_ablations


PHASE_NAMES = {"collect_s": "collection", "prepare_s": "latents", "train_s": "training", "eval_s": "evaluation",
               "ablation_train_s": "ablation training", "ablation_eval_s": "ablation evaluation",
               "evidence_collect_s": "collection and latents for other demonstration counts",
               "evidence_lbva_train_s": "lbva training, further seeds and counts",
               "evidence_lbva_eval_s": "lbva evaluation, further seeds, counts and FDM-grounded async",
               "evidence_peer_train_s": "peer training (LeRobot)", "evidence_peer_eval_s": "peer evaluation"}
MAIN_PHASES = ("collect_s", "prepare_s", "train_s", "eval_s")


def _counts(row: dict) -> tuple[int, int]:
    """(successful episodes, episodes) of a summary row."""
    n = int(row.get("episodes", 0) or 0)
    return round(float(row.get("success_rate", 0.0) or 0.0) * n), n


def _percent(row: dict) -> str:
    k, n = _counts(row)
    return f"{100 * k / n:.0f} %" if n else "–"


def _difference_mark(row: dict, ref: dict | None) -> str:
    """" ▲" / " ▼" when the success rate of ``row`` differs from the reference row's beyond the 95 % interval of the
    difference (Newcombe's hybrid score interval), else ""."""
    from lbva.eval.intervals import difference_interval

    k, n = _counts(row)
    if ref is None or ref is row or not n:
        return ""
    k0, n0 = _counts(ref)
    if not n0:
        return ""
    _, low, high = difference_interval(k, n, k0, n0)
    return " ▲" if low > 0 else " ▼" if high < 0 else ""


def write_demo_report(out: Path, cfg, tasks, results: dict, timings: dict, with_ablations: bool | Sequence[str],
                      episodes: int, max_steps: int, evidence: dict | None = None, quick: bool = False, main_demos: int = 30,
                      seeds: int = 1) -> Path:
    """``report.md``: one table per question (baselines, peers and seeds, demonstrations, each ablation) with 95 %
    intervals, a reading of the results, the time of every phase, the figures and the episode videos."""
    from lbva.eval.report import number, plot_rates, success_cell

    records = (evidence or {}).get("records", [])
    lines = ["# lbva demo report", ""]
    if quick:
        lines += ["> **This is a `--quick` smoke run: its numbers mean nothing.** A tiny model trained for "
                  f"{cfg.trainer.max_steps} steps on {main_demos} demonstrations per task, {episodes} episode(s) per "
                  "task: it only shows that every phase runs. Run `lbva demo` for numbers.", ""]
    lines += [f"Model `{cfg.model.size}` ({cfg.model.layout} action stream), {cfg.trainer.max_steps} training steps on "
              f"{main_demos} scripted demonstrations per task; every policy is scored on the same {episodes} held-out "
              f"seeded episodes per task, at most {max_steps} steps each. Success cells show the rate and its 95 % "
              "Wilson interval over episodes; ▲/▼ mark a difference to a table's reference row whose 95 % interval "
              "(Newcombe) excludes 0.", ""]
    main_total = sum(timings.get(k, 0.0) for k in MAIN_PHASES)
    lines += ["Time per phase (minutes, as measured when each phase ran): "
              + ", ".join(f"{PHASE_NAMES.get(k, k)} {v / 60:.1f}" for k, v in timings.items())
              + f"; the plain demo (first four) {main_total / 60:.1f} in all"
              + (f", everything {sum(timings.values()) / 60:.1f}." if len(timings) > len(MAIN_PHASES) else "."), ""]
    lines += ["## Reading", "", _reading(tasks, results, records, main_demos, quick), ""]

    # does the trained model beat trivial baselines, and does its video context matter?
    lines += ["## Closed-loop success against baselines", "",
              "| variant | " + " | ".join(tasks) + " | mean success | mean progress |",
              "|---|" + "---:|" * (len(tasks) + 2)]
    series = {}
    for v in CORE:
        sm = results[v.label]["summary"]
        lines.append(f"| {v.label} | " + " | ".join(success_cell(sm.get(t, {})) for t in tasks)
                     + f" | **{success_cell(sm.get('mean', {}))}** | {number(sm.get('mean', {}).get('progress'))} |")
        series[v.label] = [_rate_with_interval(sm.get(t, {})) for t in [*tasks, "mean"]]
    plot_rates([*tasks, "mean"], series, out / "success.png", "success on held-out episodes (95 % Wilson intervals)",
               ylabel="success rate")
    lines += ["", "![success per task and variant](success.png)", ""]

    figures: list[str] = []
    if records or (evidence or {}).get("failures"):
        from lbva.demo_evidence import evidence_figures, evidence_tables

        lines += evidence_tables(records, evidence.get("failures", []), tasks, main_demos, seeds, cfg.trainer.max_steps)
        figures = evidence_figures(records, tasks, main_demos, out)
        if "evidence_success.png" in figures:
            lines += ["![success per task of lbva and the peers](evidence_success.png)", ""]

    if with_ablations:
        lines += ["## Ablations", "",
                  "One training seed. Success per task and mean over tasks; ▲/▼: outside the 95 % interval of the "
                  "difference to the table's first row. Time to finish: mean over successful episodes of the episode "
                  "on a robot at the embodiment's control rate (steps / control rate + the idle time the measured "
                  "chunk latencies would cost, less what async execution hides; – without a successful episode). "
                  "Chunk latency: median per episode, measured here on the CPU.", ""]
        for ab in selected_ablations(cfg, with_ablations):
            if len(ab.rows) < 2:
                continue
            lines += [f"### {ab.title}", "", f"{ab.claim}.", "",
                      "| setting | recipe switch | " + " | ".join(tasks) + " | mean success | time to finish (s) | "
                      "chunk latency (ms) |", "|---|---|" + "---:|" * (len(tasks) + 3)]
            ref = results[ab.rows[0][2].label]["summary"]
            for label, switch, v in ab.rows:
                sm = results[v.label]["summary"]
                m = sm.get("mean", {})
                cells = [_percent(sm.get(t, {})) + _difference_mark(sm.get(t, {}), ref.get(t)) for t in tasks]
                lines.append(f"| {label} | `{switch}` | " + " | ".join(cells)
                             + f" | {success_cell(m)}{_difference_mark(m, ref.get('mean'))} | {number(m.get('time_to_finish_s'))} | "
                      f"{number(m.get('chunk_latency_s'), '.0f', scale=1000)} |")
            lines.append("")

    lines += ["## Figures and videos", ""]
    if (out / "loss_curves.png").is_file():
        lines += ["Training loss of every lbva model (faint: logged values; solid: running mean):", "",
                  "![training loss](loss_curves.png)", ""]
    if "peer_loss_curves.png" in figures:
        lines += ["The peers' training loss as LeRobot logs it (its own objectives, not comparable with lbva's):", "",
                  "![peer training loss](peer_loss_curves.png)", ""]
    if (out / "prediction.png").is_file():
        lines += ["![predicted vs real frames](prediction.png)", ""]
    videos = sorted(out.glob("eval/*/videos/*.mp4")) + sorted(out.glob("evidence/*/*/eval/videos/*.mp4"))
    if videos:
        lines += ["Episode videos (the camera enlarged 4×; the first held-out episode of each task):", ""]
        lines += [f"- [{v.relative_to(out)}]({v.relative_to(out)})" for v in videos]
        lines.append("")
    lines += ["Per-variant reports (per-task tables, success plots): `eval/<variant>/report.md`; training curves and "
              f"sampled-vs-real videos: `tensorboard --logdir {out}`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    (out / "summary.json").write_text(strict_json.dumps({k: v["summary"] for k, v in results.items()} | {"timings": timings},
                                                 indent=2, default=str))
    return path


def _rate_with_interval(row: dict) -> tuple[float, float, float] | None:
    from lbva.eval.intervals import wilson_interval

    k, n = _counts(row)
    return (k / n, *wilson_interval(k, n)) if n else None


def _reading(tasks, results: dict, records: list, main_demos: int, quick: bool) -> str:
    """One paragraph saying what the tables show, from the numbers themselves."""
    from lbva.demo_evidence import pool, row_specs
    from lbva.eval.intervals import differs, format_rate

    if quick:
        return ("A `--quick` run trains a tiny model for a few steps and scores it on one episode per task: whatever "
                "its tables say is noise, not a result.")
    k, n = _counts(results[SYNC.label]["summary"]["mean"])
    others = [(v.label, *_counts(results[v.label]["summary"]["mean"])) for v in CORE if v != SYNC]
    best = max(others, key=lambda o: o[1] / max(o[2], 1))
    text = (f"The trained model succeeds on {k} of {n} held-out episodes ({format_rate(k, n)}); the best baseline "
            f"(\"{best[0]}\") on {best[1]} of {best[2]}: "
            + ("a difference the intervals support." if differs(k, n, best[1], best[2]) else
               "within the intervals, so this run does not show the model above its baselines."))
    if records:
        specs = row_specs(records)
        rows = [(p, meaning, pool(records, p, b, main_demos, tasks)) for p, b, meaning in specs]
        rows = [r for r in rows if r[2] is not None and r[2].episodes["mean"]]
        if rows:
            ref = rows[0][2]
            parts = []
            for policy, meaning, p in rows[1:]:
                ks, ns = p.successes["mean"], p.episodes["mean"]
                verdict = ("above" if ks / ns > ref.successes["mean"] / ref.episodes["mean"] else "below") \
                    if differs(ks, ns, ref.successes["mean"], ref.episodes["mean"]) else "within the intervals of"
                parts.append(f"{policy} at {meaning} ({p.seeds} seed{'s' if p.seeds > 1 else ''}) "
                             f"{format_rate(ks, ns)}, {verdict} it")
            text += (f" On {main_demos} demonstrations per task and over {ref.seeds} training "
                     f"seed{'s' if ref.seeds > 1 else ''}, {rows[0][0]} succeeds on "
                     f"{format_rate(ref.successes['mean'], ref.episodes['mean'])}"
                     + ("; " + "; ".join(parts) if parts else "") + ".")
            ranked = sorted(rows, key=lambda r: -r[2].successes["mean"] / r[2].episodes["mean"])
            if len(ranked) > 1:
                (p1, m1, a), (p2, m2, b) = ranked[0][:3], ranked[1][:3]
                lead = differs(a.successes["mean"], a.episodes["mean"], b.successes["mean"], b.episodes["mean"])
                text += (f" Highest: {p1} ({m1}), " + ("ahead of the next row beyond the intervals." if lead else
                         f"but not beyond the intervals of the next, {p2} ({m2})."))
        counts = sorted({r["demos"] for r in records})
        if len(counts) > 1:
            moves = []
            for policy, budget, _ in specs:
                if budget != "steps":
                    continue
                a, b = pool(records, policy, "steps", counts[0], tasks), pool(records, policy, "steps", counts[-1], tasks)
                if a and b and a.episodes["mean"] and b.episodes["mean"]:
                    moves.append(f"{policy} {100 * a.successes['mean'] / a.episodes['mean']:.0f} → "
                                 f"{100 * b.successes['mean'] / b.episodes['mean']:.0f} %")
            if moves:
                text += f" From {counts[0]} to {counts[-1]} demonstrations per task: " + ", ".join(moves) + "."
        text += (" The intervals cover episode noise (which initial states a policy met); the seed means show how far "
                 "training seeds move a row.")
    return text
