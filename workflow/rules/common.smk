# Helpers shared by the rule files. The library does the work; rules only connect files.
from spacemoc.arms import known_arms
from spacemoc.config import classifier_splits
from spacemoc.games import GAMES, DATA_SPLITS, get_game
from spacemoc.stages.plots import PLOTS


wildcard_constraints:
    game="|".join(GAMES),
    model="|".join(known_arms(config)),
    split="|".join(DATA_SPLITS),
    seed=r"\d+",


def all_targets():
    """What `snakemake` with no target builds: every configured game's tables and figures."""
    return [
        "results/summary.csv",
        "results/results.md",
        *expand("results/{game}/eval.csv", game=config["games"]),
        *expand(
            "results/{game}/control.csv",
            game=[g for g in config["games"] if get_game(g).control_policy],
        ),
        *expand(
            "results/{game}/{model}/{figure}",
            game=config["games"],
            model=config["models"],
            figure=["plots/detections.png", "class_recall.csv"],
        ),
    ]
