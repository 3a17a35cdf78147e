"""Rule `summary`: every configured game's eval.csv -> results/summary.csv."""

from spacemoc.evaluate import summary
from spacemoc.logs import log_to

with log_to(snakemake.log[0]):
    summary(list(snakemake.input), snakemake.output[0])
