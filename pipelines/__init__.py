"""Ray Data pipelines (replay of the owner's memory)."""
