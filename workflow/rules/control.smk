# Rules of the control stage: does an agent lose anything by reading objects from the detector?
# The game's simple policy (spacemoc.control) with RAM, detector and random objects
# (docs/control.md).
from spacemoc.config import canonical


rule control:
    input:
        models=expand(
            "results/{{game}}/{model}/seed{seed}/model.pt",
            model=config["models"],
            seed=config["seeds"][0],
        ),
        classifiers=expand(
            "results/{{game}}/{model}/seed{seed}/classifier.npz",
            model=config["models"],
            seed=config["seeds"][0],
        ),
    output:
        "results/{game}/control.csv",
    log:
        "logs/{game}/control.log",
    benchmark:
        "results/{game}/benchmarks/control.tsv"
    conda:
        "../envs/spacemoc.yaml"
    threads: config["threads"]
    params:
        control=canonical(config["control"]),
        arms=config["models"],
        boxes=config["eval"]["boxes"],
        overlap_suppression=config["eval"]["overlap_suppression"],
    script:
        "../scripts/control.py"
