# Rules of the tracking stage.
