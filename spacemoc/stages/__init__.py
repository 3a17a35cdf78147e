"""Stages: functions that read and write the workflow's files over the pure modules below them
(models, geometry, metrics, classifier). So far the classifier stage lives here; the others are
still top-level modules (spacemoc.train, spacemoc.latents, spacemoc.evaluate, ...)."""
