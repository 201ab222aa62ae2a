"""Sub-commands of the ``benchmark`` CLI that belong to one area (data, train, export, ...)."""
