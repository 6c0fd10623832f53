"""The model repository: folders on disk, version policies, model states, loading and unloading."""
