# Rules of the distill stage: a trained run's model taught to a small student for fast detection
# in agents, and the student's scores on the test split (docs/detector.md). Built on request:
#   snakemake ... -- results/pong/space_moc/seed0/student_metrics.csv
from spacemoc.config import canonical, distill_splits


rule distill:
    input:
        model="results/{game}/{model}/seed{seed}/model.pt",
        classifier="results/{game}/{model}/seed{seed}/classifier.npz",
        data=lambda wildcards: expand(
            "results/{game}/data/{split}.h5",
            game=wildcards.game,
            split=distill_splits(config, wildcards.game),
        ),
    output:
        directory("results/{game}/{model}/seed{seed}/student"),
    log:
        "logs/{game}/{model}/distill_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/distill_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    resources:
        # it trains a network: on a GPU where there is one
        gpu=1,
    params:
        settings=canonical(config["distill"]),
    script:
        "../scripts/distill.py"


rule student_evaluate:
    input:
        student="results/{game}/{model}/seed{seed}/student",
        data="results/{game}/data/test.h5",
    output:
        latents="results/{game}/{model}/seed{seed}/student_latents/test.h5",
        metrics="results/{game}/{model}/seed{seed}/student_metrics.csv",
    log:
        "logs/{game}/{model}/student_evaluate_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/student_evaluate_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    params:
        few_shot=config["eval"]["few_shot"],
        seed=config["eval"]["seed"],
    script:
        "../scripts/student_evaluate.py"
