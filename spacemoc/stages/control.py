"""The control stage: the game's simple object-based policy (``spacemoc.control``) played for a
fixed number of seeded steps with RAM objects, with each model arm's detector objects and with
random actions -> ``results/{game}/control.csv``.

Rows: (game, model, seed, steps, won, lost, return, episodes, missed, extra) with ``model`` one of
``ram``, ``random`` or an arm's name (its detector), then per model ``mean`` and ``std`` (sample
std) rows over the seeds. ``missed`` / ``extra``: the shares of frames where the detector misses a
category RAM shows, or reports more objects of a category than RAM has (detector rows only).
"""

from __future__ import annotations

from pathlib import Path

from spacemoc.tables import write_table

COLUMNS = (
    "game", "model", "seed", "steps", "won", "lost", "return", "episodes", "missed", "extra",
)  # fmt: skip
VALUES = ("won", "lost", "return", "episodes", "missed", "extra")


def control(
    game: str,
    out_csv: str | Path,
    detectors: dict[str, str | Path],
    steps: int,
    seeds: list[int],
    device: str | None = None,
    box_readout: str | None = None,
    overlap_suppression: float | None = None,
) -> list[dict]:
    """Play ``steps`` steps per seed with every object source and write ``out_csv``.

    ``detectors``: arm name -> its run folder (``model.pt`` + ``classifier.npz``) or detector
    folder, as ``spacemoc.Detector.load`` takes it; ``box_readout`` its box readout and
    ``overlap_suppression`` its overlap suppression (None: what the run was evaluated with);
    ``device``: None picks CUDA when there is one."""
    from spacemoc.control import play, policy_for
    from spacemoc.data.env import make_env
    from spacemoc.detector import Detector
    from spacemoc.envs import DetectedObjects
    from spacemoc.games import get_game
    from spacemoc.logs import StatusLine

    game_row = get_game(game)
    policy = policy_for(game_row.name)
    sources = [("ram", None), ("random", None), *detectors.items()]
    status = StatusLine(f"control {game_row.name}", len(sources) * len(seeds), unit="run")
    rows, done = [], 0
    for model, folder in sources:
        detector = None
        if folder is not None:
            detector = Detector.load(
                folder,
                device=device,
                box_readout=box_readout,
                overlap_suppression=overlap_suppression,
            )
        for seed in seeds:
            env = make_env(game_row)
            source = "detector" if detector is not None else model
            if detector is not None:
                env = DetectedObjects(env, detector)
            result = play(env, None if source == "random" else policy, steps, seed, source)
            env.close()
            row = {"game": game_row.name, "model": model, "seed": str(seed), "steps": steps}
            rows.append({**row, **result})
            done += 1
            status.update(done)
            print(f"{model} seed {seed}: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        rows += _mean_std(rows[-len(seeds) :])
    _write(rows, out_csv)
    return rows


def _mean_std(runs: list[dict]) -> list[dict]:
    from spacemoc.stages.evaluate import mean_and_std

    mean = {k: runs[0][k] for k in ("game", "model", "steps")}
    mean["seed"] = "mean"
    std = dict(mean, seed="std")
    for key in VALUES:
        mean[key], std[key] = mean_and_std([float(r[key]) for r in runs if key in r])
    return [mean, std]


def _write(rows: list[dict], path) -> None:
    write_table(rows, path, COLUMNS)
