"""The model registry: imported and trained versions, release artifacts and cached patches."""
