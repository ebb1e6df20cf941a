"""LeRobot's own ACT and Diffusion Policy as peers of lbva, trained on the same LeRobot dataset and scored in
lbva's harness.

* :func:`train_peer` trains one peer with LeRobot's training code itself (``lerobot.scripts.lerobot_train.train``
  with a ``TrainPipelineConfig``), in a spawned process so that LeRobot's logging set-up, seeding and memory stay
  out of the caller's process. LeRobot's own log goes to ``<output_dir>/train.log``; the loss at every logged step
  is kept for the report.
* :class:`PeerPolicyFactory` / :class:`LeRobotPeerPolicy` wrap the trained policy folder with its saved pre- and
  post-processors (normalisation statistics) as a :class:`lbva.policy_like.PolicyLike`, so that
  :func:`lbva.eval.rollout.rollout` runs it on exactly the seeded episodes it runs lbva on.

Peers keep LeRobot's defaults. :data:`POLICY_CHANGES`, :data:`TRAINING_CHANGES` and :data:`EVALUATION_CHANGES` list
every setting that differs from them and why; the README's table of changes is checked against these lists by a test.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# lbva's short name -> LeRobot's policy type and the name the report shows
PEERS = {"act": ("act", "ACT (LeRobot)"), "diffusion": ("diffusion", "Diffusion Policy (LeRobot)")}


@dataclass(frozen=True)
class SettingChange:
    """One setting a peer runs with that is not LeRobot's default."""

    peers: str  # "act", "diffusion" or "both"
    setting: str  # the field of LeRobot's config, as lerobot-train spells it
    lerobot_default: str
    here: str
    why: str
    value: Any = None  # what an evaluation-time change sets the field to


POLICY_CHANGES: tuple[SettingChange, ...] = (
    SettingChange("both", "policy.pretrained_backbone_weights", "ResNet18_Weights.IMAGENET1K_V1", "None",
                  "nothing may be downloaded at run time, so the ResNet18 backbone starts from random weights, "
                  "as lbva's embedded video encoder does"),
    SettingChange("both", "policy.device", "the best available", "cpu", "the demo runs on a CPU machine"),
    SettingChange("both", "policy.push_to_hub", "true", "false", "trained policies stay local"),
)
TRAINING_CHANGES: tuple[SettingChange, ...] = (
    SettingChange("both", "steps", "100000", "lbva's trainer.max_steps, or the steps that fit lbva's training time",
                  "the budget under comparison"),
    SettingChange("both", "seed", "1000", "lbva's training seed (0, 1, 2)", "each peer seed pairs with an lbva seed"),
    SettingChange("both", "num_workers", "4", "0",
                  "64x64 frames decode in the training process in a few percent of a step's time; worker processes "
                  "would compete for the machine's 2 cores and memory"),
    SettingChange("both", "log_freq", "200", "10", "enough points for a loss curve over a 1500-step run"),
    SettingChange("both", "env", "none (set per benchmark)", "none",
                  "the peers are scored in lbva's harness on lbva's held-out episodes, not in LeRobot's env"),
)


# Evaluation only: the peer is trained exactly as above and sampled with these settings in lbva's harness.
EVALUATION_CHANGES: tuple[SettingChange, ...] = (
    SettingChange("diffusion", "policy.noise_scheduler_type", "DDPM", "DDIM",
                  "cost: 100 DDPM steps of the 263M-parameter U-Net took 134 processor seconds per 32-action chunk on "
                  "this CPU, about 15 processor hours per 80-episode evaluation; DDIM samples the same trained noise "
                  "schedule in fewer steps, as the Diffusion Policy paper does on its real robots (100 training, 10 "
                  "inference iterations)", "DDIM"),
    SettingChange("diffusion", "policy.num_inference_steps", "None (all 100 training timesteps)", "10",
                  "see policy.noise_scheduler_type", 10),
)


def check_peer(kind: str) -> str:
    if kind not in PEERS:
        raise ValueError(f"unknown peer {kind!r}; allowed: {', '.join(PEERS)} (LeRobot's ACT and Diffusion Policy)")
    return kind


@dataclass(frozen=True)
class PeerRun:
    """One peer training run: which peer, on which LeRobot dataset, into which folder, for how many steps.

    ``policy_overrides`` set fields of LeRobot's policy config on top of :data:`POLICY_CHANGES`; the demo passes
    none (tests shrink the networks with them). ``batch_size`` None keeps LeRobot's default."""

    kind: str
    dataset: str
    output_dir: str
    steps: int
    seed: int
    batch_size: int | None = None
    policy_overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_peer(self.kind)
        if self.steps < 1:
            raise ValueError(f"a peer needs at least 1 training step; got steps={self.steps}")


def policy_config(kind: str, overrides: Sequence[tuple[str, Any]] = ()) -> Any:
    """LeRobot's config of the peer ``kind`` with :data:`POLICY_CHANGES` (and ``overrides``) applied."""
    import lerobot.policies  # noqa: F401  (registers the policy configs by their type names)
    from lerobot.configs.policies import PreTrainedConfig

    lerobot_type = PEERS[check_peer(kind)][0]
    cls = PreTrainedConfig.get_choice_class(lerobot_type)
    fields = {"pretrained_backbone_weights": None, "device": "cpu", "push_to_hub": False, **dict(overrides)}
    return cls(**fields)


def train_config(run: PeerRun) -> Any:
    """The ``TrainPipelineConfig`` LeRobot trains ``run`` with: its defaults plus :data:`TRAINING_CHANGES`."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.train import TrainPipelineConfig

    if not (Path(run.dataset) / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"{run.dataset} is not a LeRobot dataset (no meta/info.json); collect it first "
                                "(lbva collect metaworld --out DIR)")
    extra = {} if run.batch_size is None else {"batch_size": run.batch_size}
    return TrainPipelineConfig(
        # the repo id is only a name here: the dataset is read from its root
        dataset=DatasetConfig(repo_id=f"local/{Path(run.dataset).name}", root=str(run.dataset)),
        policy=policy_config(run.kind, run.policy_overrides),
        output_dir=Path(run.output_dir) / "lerobot",
        steps=run.steps,
        seed=run.seed,
        num_workers=0,
        log_freq=min(10, run.steps),
        env=None,
        **extra,
    )


def policy_folder(output_dir: str | Path) -> Path:
    """Where LeRobot leaves the trained policy (weights, config, processors) of a run in ``output_dir``."""
    return Path(output_dir) / "lerobot" / "checkpoints" / "last" / "pretrained_model"


class _LossRecorder(logging.Filter):
    """Keeps [step, mean loss, wall seconds, processor seconds] at every training log line LeRobot writes.

    LeRobot logs its ``MetricsTracker`` object itself at every ``log_freq`` step through the root logger, and its
    ``init_logging`` clears the root logger's handlers; a filter on the root logger survives that and sees the
    tracker before its averages are reset. The clocks give the cost per step apart from start-up."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[list[float]] = []
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def filter(self, record: logging.LogRecord) -> bool:
        tracker = record.msg
        steps, meters = getattr(tracker, "steps", None), getattr(tracker, "metrics", None)
        if isinstance(steps, int) and isinstance(meters, dict) and "loss" in meters:
            self.losses.append([steps, float(meters["loss"].avg), time.perf_counter() - self.t0,
                                time.process_time() - self.cpu0])
        return True


def _train_in_child(run: PeerRun, result_path: str, log_path: str) -> None:
    """The spawned process: LeRobot's ``train`` with its console output in ``log_path``."""
    log = open(log_path, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    from lerobot.scripts.lerobot_train import train

    recorder = _LossRecorder()
    logging.getLogger().addFilter(recorder)
    train(train_config(run))
    Path(result_path).write_text(json.dumps({"losses": recorder.losses}))


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_peer(run: PeerRun) -> dict[str, Any]:
    """Train ``run`` with LeRobot's own training code; returns what the report needs.

    ``{"kind", "steps", "seed", "seconds", "cpu_seconds", "losses": [[step, loss, wall s, processor s], ...],
    "policy": folder, "parameters"}``. ``seconds`` is the wall time of the whole training process (start-up, dataset, training,
    saving) and ``cpu_seconds`` its processor time, which other jobs on a shared machine do not inflate. An earlier
    attempt's folder is replaced (LeRobot refuses to write into an existing one). The optimiser state LeRobot saves
    for resuming is deleted afterwards: the peers are not trained further, and Diffusion Policy's is 2 GB."""
    import multiprocessing as mp

    train_config(run)  # a missing dataset or a bad setting fails here, not in the child's log
    out = Path(run.output_dir)
    if (out / "lerobot").exists():
        shutil.rmtree(out / "lerobot")
    out.mkdir(parents=True, exist_ok=True)
    result_path, log_path = out / "train_result.json", out / "train.log"
    result_path.unlink(missing_ok=True)
    cpu0, t0 = _children_cpu_seconds(), time.perf_counter()
    child = mp.get_context("spawn").Process(target=_train_in_child, args=(run, str(result_path), str(log_path)),
                                            name=f"lerobot-train-{run.kind}")
    child.start()
    child.join()
    seconds, cpu = time.perf_counter() - t0, _children_cpu_seconds() - cpu0
    if child.exitcode != 0 or not result_path.is_file():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:] if log_path.is_file() else []
        why = f"killed by signal {-child.exitcode}" if (child.exitcode or 0) < 0 else f"exit code {child.exitcode}"
        hint = " (signal 9 is usually the out-of-memory killer: free memory and run again)" \
            if child.exitcode == -9 else ""
        raise RuntimeError(f"LeRobot's training of {run.kind} in {out} failed: {why}{hint}; its log {log_path} ends "
                           f"with: {' | '.join(tail) or '(empty)'}")
    shutil.rmtree(out / "lerobot" / "checkpoints" / "last" / "training_state", ignore_errors=True)
    folder = policy_folder(out)
    return {"kind": run.kind, "steps": run.steps, "seed": run.seed, "seconds": seconds, "cpu_seconds": cpu,
            "losses": json.loads(result_path.read_text())["losses"], "policy": str(folder),
            "parameters": _count_parameters(folder / "model.safetensors"), "run": asdict(run)}


def _count_parameters(weights: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(weights), "np") as f:
        return int(sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys()))


class LeRobotPeerPolicy:
    """A trained LeRobot policy folder as an lbva ``PolicyLike``: simulator observations (uint8 camera frames
    (h, w, 3), the state vector) in, one native action out, through the folder's own pre- and post-processors."""

    def __init__(self, folder: str | Path, embodiment: str):
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        from lbva.embodiment import get_embodiment

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a LeRobot policy folder (no config.json); train the peer first")
        cfg = PreTrainedConfig.from_pretrained(folder)
        cfg.device = "cpu"
        for change in EVALUATION_CHANGES:
            if change.peers in ("both", cfg.type):
                setattr(cfg, change.setting.removeprefix("policy."), change.value)
        self.policy = get_policy_class(cfg.type).from_pretrained(folder, config=cfg).eval()
        self.preprocessor, self.postprocessor = make_pre_post_processors(cfg, pretrained_path=str(folder))
        spec = get_embodiment(embodiment)
        self.camera_keys = list(cfg.image_features)
        self.state_key = spec.state_key if cfg.robot_state_feature is not None else None
        self.action_dim = int(spec.native_action_dim)
        self.prompt = ""
        self._torch = torch

    def seed(self, seed: int) -> None:
        # Diffusion Policy samples its noise from torch's global generator; ACT is deterministic in evaluation
        self._torch.manual_seed(int(seed))

    def reset(self, prompt: str = "") -> None:
        self.prompt = prompt
        self.policy.reset()  # empties the action queue (and Diffusion Policy's observation history)
        self.preprocessor.reset()
        self.postprocessor.reset()

    def _batch(self, observation: dict) -> dict:
        torch = self._torch
        missing = [k for k in [*self.camera_keys, *([self.state_key] if self.state_key else [])] if k not in observation]
        if missing:
            raise KeyError(f"the observation lacks {missing} that the LeRobot policy was trained on; it has "
                           f"{sorted(observation)}")
        batch: dict[str, Any] = {}
        for key in self.camera_keys:  # uint8 (h, w, 3) -> float (1, 3, h, w) in [0, 1], as LeRobot's training reads
            frame = torch.from_numpy(np.ascontiguousarray(observation[key]))
            batch[key] = frame.permute(2, 0, 1).unsqueeze(0).float().div(255.0)
        if self.state_key:
            batch[self.state_key] = torch.as_tensor(np.asarray(observation[self.state_key]), dtype=torch.float32)[None]
        batch["task"] = [self.prompt]
        return batch

    def select_action(self, observation: dict) -> np.ndarray:
        with self._torch.inference_mode():
            action = self.postprocessor(self.policy.select_action(self.preprocessor(self._batch(observation))))
        return np.asarray(action.reshape(-1)[: self.action_dim].cpu().numpy(), dtype=np.float32)  # (A,)

    def predict_action_chunk(self, observation: dict) -> np.ndarray:
        with self._torch.inference_mode():
            chunk = self.policy.predict_action_chunk(self.preprocessor(self._batch(observation)))  # (1, T, A)
            chunk = self.postprocessor(chunk)
        return np.asarray(chunk[0].cpu().numpy(), dtype=np.float32)  # (T, A)

    def observe(self, frames: dict, executed_actions: np.ndarray) -> None:
        pass  # the peers keep no world-model state beyond their action queue


@dataclass(frozen=True)
class PeerPolicyFactory:
    """A picklable factory for :func:`lbva.eval.rollout.rollout`: the trained LeRobot folder for every task."""

    folder: str
    embodiment: str

    def __call__(self, task: str) -> LeRobotPeerPolicy:
        return LeRobotPeerPolicy(self.folder, self.embodiment)
