"""Rule `summary`: every configured game's eval.csv -> results/summary.csv."""

from spacemoc.logs import log_to
from spacemoc.stages.evaluate import summary

with log_to(snakemake.log[0]):
    summary(list(snakemake.input), snakemake.output[0])
