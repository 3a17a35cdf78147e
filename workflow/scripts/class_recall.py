"""Rules `class_recall_data` and `class_recall`: recall per relevant class of the data's own
sources and, given latents, of a model arm (spacemoc.stages.class_recall.run_class_recall)."""

from spacemoc.logs import log_to
from spacemoc.stages.class_recall import run_class_recall

with log_to(snakemake.log[0]):
    run_class_recall(
        snakemake.input.data,
        snakemake.output.csv,
        plot_path=snakemake.output.png,
        background_path=snakemake.input.background,
        latents_path=snakemake.input.get("latents"),
        model_name=snakemake.params.arm,
    )
