"""`modelport tune`: the instance layout and batching that serve a model fastest within a latency budget."""
