# Rules of the train stage.
from spacemoc.config import train_needs_background, training_recipe


# Checkpoints in results/{game}/{model}/seed{seed}/checkpoints/ are not outputs: Snakemake keeps
# them when a job fails, so a rerun continues from the last one.
rule train:
    input:
        data="results/{game}/data/train.h5",
        # the in-training validation's subset (train.eval_every; 0: none)
        validation=branch(
            config["train"]["eval_every"] > 0,
            then="results/{game}/data/validation.h5",
            otherwise=[],
        ),
        # the game's background, for a model that needs it (slot.attend: changed)
        background=branch(
            lambda wildcards: train_needs_background(
                config, wildcards.game, wildcards.model
            ),
            then="results/{game}/background.npy",
            otherwise=[],
        ),
    output:
        model="results/{game}/{model}/seed{seed}/model.pt",
        curves="results/{game}/{model}/seed{seed}/train_curves.csv",
    log:
        "logs/{game}/{model}/train_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/train_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        # what the weights depend on (a change retrains); the script reads the whole config, whose
        # other settings (logging, checkpoint interval, device, other games) do not retrain
        recipe=lambda wildcards: training_recipe(
            config, wildcards.game, wildcards.model
        ),
    script:
        "../scripts/train.py"
