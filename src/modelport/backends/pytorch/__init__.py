"""PyTorch backend: TorchScript models (model.pt); needs the optional torch dependency."""
