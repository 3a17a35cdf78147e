"""spacemoc: unsupervised object discovery for Atari 2600 games with SPACE+MOC."""

__version__ = "0.1.0"

__all__ = ["Detector", "Tracker", "__version__"]


def __getattr__(name):  # lazy: `import spacemoc` must not import torch
    if name == "Detector":
        from spacemoc.detector import Detector

        return Detector
    if name == "Tracker":
        from spacemoc.tracking import Tracker

        return Tracker
    raise AttributeError(f"module 'spacemoc' has no attribute {name!r}")
