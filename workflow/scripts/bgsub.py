"""Rule `bgsub`: the background-subtraction baseline's metrics
(spacemoc.stages.evaluate.run_bgsub)."""

from spacemoc.logs import log_to
from spacemoc.stages.evaluate import run_bgsub

with log_to(snakemake.log[0]):
    run_bgsub(snakemake.input.data, snakemake.input.background, snakemake.output[0])
