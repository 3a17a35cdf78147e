from spacemoc.data import compute_background, save_background
from spacemoc.logs import log_to

with log_to(snakemake.log[0]):
    image = compute_background(
        snakemake.wildcards.game, snakemake.params.frames, snakemake.params.seed
    )
    save_background(image, snakemake.output.png, game=snakemake.wildcards.game)
