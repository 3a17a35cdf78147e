# Rule of the export stage: a trained run as a self-contained detector folder (docs/detector.md).
from spacemoc.config import run_record


# Copies and one small checkpoint: never worth a cluster job.
localrules:
    export,


rule export:
    input:
        model="results/{game}/{model}/seed{seed}/model.pt",
        classifier="results/{game}/{model}/seed{seed}/classifier.npz",
        labels="results/{game}/{model}/seed{seed}/classifier_labels.csv",
        eval="results/{game}/eval.csv",
        train_benchmark="results/{game}/{model}/benchmarks/train_seed{seed}.tsv",
    output:
        directory("results/{game}/{model}/seed{seed}/detector"),
    log:
        "logs/{game}/{model}/export_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/export_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        # what the run was trained and evaluated with (the folder's config.yaml)
        config=lambda wildcards: run_record(config, wildcards.game, wildcards.model),
    script:
        "../scripts/export.py"
