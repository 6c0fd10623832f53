"""The server core: the InferenceServer facade every frontend uses, and request validation."""
