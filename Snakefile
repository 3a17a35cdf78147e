# spacemoc: SPACE+MOC object discovery for Atari as a Snakemake workflow.
# Target paths and file formats: docs/design.md. Config keys: workflow/schemas/config.schema.yaml.
from snakemake.utils import min_version, validate

from spacemoc.config import config_problems

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)
# Everything the schema cannot say, all at once, before any job runs. CUDA is checked where jobs
# run on this machine (a cluster's submit host may have none).
problems = config_problems(config, check_device=workflow.local_exec)
if problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(problems))


# The home page of `snakemake --report report.html`: the stages and the config of the run.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/export.smk"


rule all:
    default_target: True
    input:
        all_targets(),
