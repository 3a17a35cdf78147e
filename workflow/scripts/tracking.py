"""Rule `tracking`: unpack Snakemake's arguments and call
spacemoc.stages.tracking.evaluate_tracking."""

from spacemoc.devices import set_threads
from spacemoc.logs import log_to
from spacemoc.stages.tracking import evaluate_tracking

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    evaluate_tracking(
        snakemake.input.data,
        snakemake.input.model,
        snakemake.output[0],
        classifier=snakemake.input.classifier,
        device=None,  # CUDA when the job's machine has it, else the CPU
        box_readout=snakemake.params.boxes,
        overlap_suppression=snakemake.params.overlap_suppression,
        **snakemake.params.tracker,
    )
