"""The worker: serves the workflows and activities on task queue `stageline`."""
