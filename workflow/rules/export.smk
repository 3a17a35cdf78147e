# Rule of the export stage: a trained run as a self-contained detector folder (docs/detector.md).


# Copies and one small checkpoint: never worth a cluster job.
localrules:
    export,


rule export:
    input:
        model="results/{game}/seed{seed}/model.pt",
        classifier="results/{game}/seed{seed}/classifier.npz",
        labels="results/{game}/seed{seed}/classifier_labels.csv",
        eval="results/{game}/eval.csv",
    output:
        directory("results/{game}/seed{seed}/detector"),
    log:
        "logs/{game}/export_seed{seed}.log",
    benchmark:
        "results/{game}/benchmarks/export_seed{seed}.tsv"
    params:
        # the whole resolved config: what the run was trained and evaluated with
        config=lambda wildcards: config,
    script:
        "../scripts/export.py"
