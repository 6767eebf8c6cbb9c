"""Stage 0, what every stage shares: errors with one-line messages, the content-addressed cache, tensor specs,
the accuracy metrics, logging. Imports nothing else from the workbench."""
