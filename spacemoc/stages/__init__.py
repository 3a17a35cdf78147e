"""Stages: one function per workflow rule, the code that reads the config's choices and the
workflow's files, over the pure modules below them (models, geometry, metrics, classifier,
tracking, validation). Each is callable from Python and from the `spacemoc` command line.

``train`` (train.train) · ``latents`` (latents.compute_latents) · ``classifier``
(classifier.train_classifier) · ``evaluate`` (evaluate.evaluate, aggregate, summary) · ``bgsub``
(evaluate.run_bgsub over bgsub) · ``tracking`` (tracking.evaluate_tracking) · ``plots``
(plots.make_plots) · ``export`` (export.export_detector). Datasets: ``spacemoc.data``.
"""
