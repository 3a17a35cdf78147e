"""Rule `aggregate`: per-seed metrics.csv files -> results/{game}/eval.csv."""

from spacemoc.logs import log_to
from spacemoc.stages.evaluate import aggregate

with log_to(snakemake.log[0]):
    aggregate(list(snakemake.input.metrics), snakemake.output[0], snakemake.input.baseline)
