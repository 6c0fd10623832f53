"""Network frontends: HTTP/REST and gRPC, thin layers over the InferenceServer."""
