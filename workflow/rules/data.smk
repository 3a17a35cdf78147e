# Rules of the data stage: background image, then one HDF5 file per split.
from spacemoc.config import dataset_arguments


rule background:
    output:
        png="results/{game}/background.png",
        npy="results/{game}/background.npy",
    log:
        "logs/{game}/background.log",
    benchmark:
        "results/{game}/benchmarks/background.tsv"
    conda:
        "../envs/spacemoc.yaml"
    params:
        frames=config["data"]["background_frames"],
        seed=config["data"]["split_seeds"]["background"],
    script:
        "../scripts/background.py"


rule dataset:
    input:
        background="results/{game}/background.npy",
    output:
        "results/{game}/data/{split}.h5",
    log:
        "logs/{game}/dataset_{split}.log",
    benchmark:
        "results/{game}/benchmarks/dataset_{split}.tsv"
    conda:
        "../envs/spacemoc.yaml"
    threads: config["data"]["workers"]
    params:
        # make_dataset arguments of the split (size, T, window, seed, motion kind): exactly what
        # the file depends on; the worker count (threads) changes no byte of it
        kwargs=lambda wildcards: dataset_arguments(config, wildcards.split),
    script:
        "../scripts/dataset.py"
