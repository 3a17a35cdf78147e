"""Rule `aggregate`: per-seed metrics.csv files -> results/{game}/eval.csv."""

from spacemoc.evaluate import aggregate
from spacemoc.logs import log_to

with log_to(snakemake.log[0]):
    aggregate(list(snakemake.input.metrics), snakemake.output[0], snakemake.input.baseline)
