# Rules of the eval stage: latents -> classifier -> metrics.csv -> eval.csv -> summary.csv, the
# background-subtraction baseline and the figures. Definitions: docs/evaluation.md.


# Table merges take a second: never worth a cluster job.
localrules:
    aggregate,
    summary,


rule latents:
    input:
        model="results/{game}/{model}/seed{seed}/model.pt",
        data="results/{game}/data/{split}.h5",
    output:
        "results/{game}/{model}/seed{seed}/latents/{split}.h5",
    log:
        "logs/{game}/{model}/latents_seed{seed}_{split}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/latents_seed{seed}_{split}.tsv"
    wildcard_constraints:
        split="validation|test|agent",
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        boxes=config["eval"]["boxes"],
        overlap_suppression=config["eval"]["overlap_suppression"],
    script:
        "../scripts/latents.py"


rule classifier:
    input:
        # validation, and the agent split's frames where the game has a control policy
        latents=lambda w: expand(
            "results/{game}/{model}/seed{seed}/latents/{split}.h5",
            split=classifier_splits(config, w.game),
            **w,
        ),
        # their splits' objects: the box calibration towards OCAtari's boxes
        data=lambda w: expand(
            "results/{game}/data/{split}.h5",
            split=classifier_splits(config, w.game),
            game=w.game,
        ),
    output:
        npz="results/{game}/{model}/seed{seed}/classifier.npz",
        joblib="results/{game}/{model}/seed{seed}/classifier.joblib",
        labels="results/{game}/{model}/seed{seed}/classifier_labels.csv",
    log:
        "logs/{game}/{model}/classifier_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/classifier_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        kind=config["eval"]["classifier"],
        clusters=config["eval"]["clusters"],
        features=config["eval"]["label_features"],
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
        model="results/{game}/{model}/seed{seed}/model.pt",
        latents="results/{game}/{model}/seed{seed}/latents/test.h5",
        data="results/{game}/data/test.h5",
        classifier="results/{game}/{model}/seed{seed}/classifier.npz",
        baseline="results/{game}/bgsub.csv",
        tracking="results/{game}/{model}/seed{seed}/tracking.csv",
    output:
        "results/{game}/{model}/seed{seed}/metrics.csv",
    log:
        "logs/{game}/{model}/evaluate_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/evaluate_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        few_shot=config["eval"]["few_shot"],
        seed=config["eval"]["seed"],
    script:
        "../scripts/evaluate.py"


rule aggregate:
    input:
        # every configured arm and seed: eval.csv compares the arms of a game
        metrics=expand(
            "results/{{game}}/{model}/seed{seed}/metrics.csv",
            model=config["models"],
            seed=config["seeds"],
        ),
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


rule results_table:
    input:
        "results/summary.csv",
    output:
        report(
            "results/results.md", caption="../report/results.rst", category="Metrics"
        ),
    log:
        "logs/results_table.log",
    benchmark:
        "results/benchmarks/results_table.tsv"
    conda:
        "../envs/spacemoc.yaml"
    script:
        "../scripts/results_table.py"


# The figures of an arm show its first configured seed.
rule class_recall_data:
    input:
        data="results/{game}/data/test.h5",
        background="results/{game}/background.npy",
    output:
        csv="results/{game}/class_recall.csv",
        png=report(
            "results/{game}/class_recall.png",
            caption="../report/class_recall.rst",
            category="Figures",
            subcategory="{game}",
        ),
    log:
        "logs/{game}/class_recall.log",
    benchmark:
        "results/{game}/benchmarks/class_recall.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        arm=None,
    script:
        "../scripts/class_recall.py"


rule class_recall:
    input:
        data="results/{game}/data/test.h5",
        background="results/{game}/background.npy",
        latents=f"results/{{game}}/{{model}}/seed{config['seeds'][0]}/latents/test.h5",
    output:
        csv="results/{game}/{model}/class_recall.csv",
        png=report(
            "results/{game}/{model}/plots/class_recall.png",
            caption="../report/class_recall.rst",
            category="Figures",
            subcategory="{game} {model}",
        ),
    log:
        "logs/{game}/{model}/class_recall.log",
    benchmark:
        "results/{game}/{model}/benchmarks/class_recall.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        arm=lambda w: w.model,
    script:
        "../scripts/class_recall.py"


rule plots:
    input:
        latents=f"results/{{game}}/{{model}}/seed{config['seeds'][0]}/latents/test.h5",
        data="results/{game}/data/test.h5",
        classifier=f"results/{{game}}/{{model}}/seed{config['seeds'][0]}/classifier.npz",
        curves=f"results/{{game}}/{{model}}/seed{config['seeds'][0]}/train_curves.csv",
        model=f"results/{{game}}/{{model}}/seed{config['seeds'][0]}/model.pt",
    output:
        **{
            name: report(
                f"results/{{game}}/{{model}}/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory="{game} {model}",
            )
            for name in PLOTS
        },
    log:
        "logs/{game}/{model}/plots.log",
    benchmark:
        "results/{game}/{model}/benchmarks/plots.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        frames=config["eval"]["plot_frames"],
    script:
        "../scripts/plots.py"
