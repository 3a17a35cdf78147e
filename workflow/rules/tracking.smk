# Rules of the tracking stage: detector + tracker on the long consecutive sequences of the
# tracking split -> MOTA and IDF1 (docs/tracking.md). The evaluate rule reads the CSV into the
# mota and idf1 columns of metrics.csv.
from spacemoc.config import canonical


rule tracking:
    input:
        model="results/{game}/{model}/seed{seed}/model.pt",
        classifier="results/{game}/{model}/seed{seed}/classifier.npz",
        data="results/{game}/data/tracking.h5",
    output:
        "results/{game}/{model}/seed{seed}/tracking.csv",
    log:
        "logs/{game}/{model}/tracking_seed{seed}.log",
    benchmark:
        "results/{game}/{model}/benchmarks/tracking_seed{seed}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    params:
        # Tracker settings given in the config's `tracking` section (library defaults otherwise)
        tracker=canonical(config["tracking"]),
        boxes=config["eval"]["boxes"],
        overlap_suppression=config["eval"]["overlap_suppression"],
    script:
        "../scripts/tracking.py"
