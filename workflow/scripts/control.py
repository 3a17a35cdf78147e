"""Rule `control`: unpack Snakemake's arguments and call spacemoc.stages.control.control."""

from pathlib import Path

from spacemoc.devices import set_threads
from spacemoc.logs import log_to
from spacemoc.stages.control import control

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    control(
        snakemake.wildcards.game,
        snakemake.output[0],
        {
            arm: Path(model).parent
            for arm, model in zip(snakemake.params.arms, snakemake.input.models, strict=True)
        },
        steps=snakemake.params.control["steps"],
        seeds=snakemake.params.control["seeds"],
        box_readout=snakemake.params.boxes,
        overlap_suppression=snakemake.params.overlap_suppression,
    )
