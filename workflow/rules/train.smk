# Rules of the train stage.


def train_config(wildcards):
    """The config sections that shape a model: a change elsewhere must not retrain it."""
    overrides = config.get("game_overrides", {})
    return {
        "train": config["train"],
        "model": config.get("model", {}),
        "game_overrides": (
            {wildcards.game: overrides[wildcards.game]}
            if wildcards.game in overrides
            else {}
        ),
    }


# Checkpoints in results/{game}/seed{seed}/checkpoints/ are not outputs: Snakemake keeps them
# when a job fails, so a rerun continues from the last one.
rule train:
    input:
        data="results/{game}/data/train.h5",
    output:
        model="results/{game}/seed{seed}/model.pt",
        curves="results/{game}/seed{seed}/train_curves.csv",
    log:
        "logs/{game}/train_seed{seed}.log",
    benchmark:
        "results/{game}/benchmarks/train_seed{seed}.tsv"
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        config=train_config,
    script:
        "../scripts/train.py"
