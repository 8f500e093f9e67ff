"""The vault: envelope encryption of secrets, a data key per environment."""
