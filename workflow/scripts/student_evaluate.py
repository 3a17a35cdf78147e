"""Rule `student_evaluate`: unpack Snakemake's arguments and call
spacemoc.stages.distill.evaluate_student."""

from spacemoc.devices import set_threads
from spacemoc.logs import log_to
from spacemoc.stages.distill import evaluate_student

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    evaluate_student(
        snakemake.input.student,
        snakemake.input.data,
        snakemake.output.latents,
        snakemake.output.metrics,
        seed=int(snakemake.wildcards.seed),
        arm=f"{snakemake.wildcards.model}_student",
        few_shot=snakemake.params.few_shot,
        eval_seed=snakemake.params.seed,
    )
