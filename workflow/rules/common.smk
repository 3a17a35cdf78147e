# Helpers shared by the rule files. The library does the work; rules only connect files.
from spacemoc.games import GAMES, DATA_SPLITS


wildcard_constraints:
    game="|".join(GAMES),
    split="|".join(DATA_SPLITS),
    seed=r"\d+",


def all_targets():
    """What `snakemake` with no target builds: every configured game's data, for now."""
    return expand("results/{game}/data/{split}.h5", game=config["games"], split=["train", "validation", "test"])
