"""The logic behind every command: each public method is one unit of work."""
