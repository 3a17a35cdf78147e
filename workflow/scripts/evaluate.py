"""Rule `evaluate`: unpack Snakemake's arguments and call spacemoc.stages.evaluate.evaluate."""

from spacemoc.logs import log_to
from spacemoc.stages.evaluate import evaluate

with log_to(snakemake.log[0]):
    evaluate(
        snakemake.input.latents,
        snakemake.input.data,
        snakemake.input.classifier,
        snakemake.output[0],
        seed=snakemake.wildcards.seed,
        model_name=snakemake.wildcards.model,
        model_path=snakemake.input.model,
        baseline_path=snakemake.input.baseline,
        # Optional: the tracking stage's CSV (mota, idf1) when the rule lists it.
        tracking_path=snakemake.input.get("tracking"),
        few_shot=snakemake.params.few_shot,
        eval_seed=snakemake.params.seed,
    )
