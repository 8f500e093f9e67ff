"""The stageline server: the JSON API, its checks, and the codec routes."""
