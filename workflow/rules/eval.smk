# Rules of the eval stage.
