"""Domain models shared by the CLI, the workflows and the activities (pydantic v2)."""
