# Rules of the eval stage: latents -> classifier -> metrics.csv -> eval.csv -> summary.csv, the
# background-subtraction baseline and the figures. Definitions: docs/evaluation.md.


# Table merges take a second: never worth a cluster job.
localrules:
    aggregate,
    summary,


rule latents:
    input:
        model="results/{game}/seed{seed}/model.pt",
        data="results/{game}/data/{split}.h5",
    output:
        "results/{game}/seed{seed}/latents/{split}.h5",
    log:
        "logs/{game}/latents_seed{seed}_{split}.log",
    benchmark:
        "results/{game}/benchmarks/latents_seed{seed}_{split}.tsv"
    wildcard_constraints:
        split="validation|test",
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        boxes=config["eval"]["boxes"],
    script:
        "../scripts/latents.py"


rule classifier:
    input:
        latents="results/{game}/seed{seed}/latents/validation.h5",
    output:
        npz="results/{game}/seed{seed}/classifier.npz",
        joblib="results/{game}/seed{seed}/classifier.joblib",
        labels="results/{game}/seed{seed}/classifier_labels.csv",
    log:
        "logs/{game}/classifier_seed{seed}.log",
    benchmark:
        "results/{game}/benchmarks/classifier_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        kind=config["eval"]["classifier"],
        seed=config["eval"]["seed"],
    script:
        "../scripts/classifier.py"


rule bgsub:
    input:
        data="results/{game}/data/test.h5",
        background="results/{game}/background.npy",
    output:
        "results/{game}/bgsub.csv",
    log:
        "logs/{game}/bgsub.log",
    benchmark:
        "results/{game}/benchmarks/bgsub.tsv"
    conda:
        "../envs/spacemoc.yaml"
    script:
        "../scripts/bgsub.py"


rule evaluate:
    input:
        model="results/{game}/seed{seed}/model.pt",
        latents="results/{game}/seed{seed}/latents/test.h5",
        data="results/{game}/data/test.h5",
        classifier="results/{game}/seed{seed}/classifier.npz",
        baseline="results/{game}/bgsub.csv",
        tracking="results/{game}/seed{seed}/tracking.csv",
    output:
        "results/{game}/seed{seed}/metrics.csv",
    log:
        "logs/{game}/evaluate_seed{seed}.log",
    benchmark:
        "results/{game}/benchmarks/evaluate_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        few_shot=config["eval"]["few_shot"],
        seed=config["eval"]["seed"],
    script:
        "../scripts/evaluate.py"


rule aggregate:
    input:
        metrics=expand("results/{{game}}/seed{seed}/metrics.csv", seed=config["seeds"]),
        baseline="results/{game}/bgsub.csv",
    output:
        report(
            "results/{game}/eval.csv",
            caption="../report/eval.rst",
            category="Metrics",
            subcategory="{game}",
        ),
    log:
        "logs/{game}/aggregate.log",
    benchmark:
        "results/{game}/benchmarks/aggregate.tsv"
    conda:
        "../envs/spacemoc.yaml"
    script:
        "../scripts/aggregate.py"


rule summary:
    input:
        expand("results/{game}/eval.csv", game=config["games"]),
    output:
        report(
            "results/summary.csv", caption="../report/summary.rst", category="Metrics"
        ),
    log:
        "logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../envs/spacemoc.yaml"
    script:
        "../scripts/summary.py"


# The figures show the first configured seed's model.
rule plots:
    input:
        latents=f"results/{{game}}/seed{config['seeds'][0]}/latents/test.h5",
        data="results/{game}/data/test.h5",
        classifier=f"results/{{game}}/seed{config['seeds'][0]}/classifier.npz",
        curves=f"results/{{game}}/seed{config['seeds'][0]}/train_curves.csv",
    output:
        **{
            name: report(
                f"results/{{game}}/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory="{game}",
            )
            for name in (
                "detections",
                "pr_curve",
                "latent_pca",
                "train_curves",
                "confusion",
            )
        },
    log:
        "logs/{game}/plots.log",
    benchmark:
        "results/{game}/benchmarks/plots.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        frames=config["eval"]["plot_frames"],
    script:
        "../scripts/plots.py"
