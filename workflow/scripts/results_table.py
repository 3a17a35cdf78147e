"""Rule `results_table`: results/summary.csv -> results/results.md (every game and arm beside the
published figures)."""

from spacemoc.logs import log_to
from spacemoc.stages.evaluate import results_table

with log_to(snakemake.log[0]):
    results_table(snakemake.input[0], snakemake.output[0])
