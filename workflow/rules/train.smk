# Rules of the train stage.
from spacemoc.cli.train import train_arguments


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
        # train, model and this game's overrides: other config sections do not retrain
        config=lambda wildcards: train_arguments(config, wildcards.game),
    script:
        "../scripts/train.py"
