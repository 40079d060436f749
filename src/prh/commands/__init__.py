"""Sub-commands of the ``prh`` CLI; each module has ``register(app)``."""
