"""Evaluation of a frozen encoder: features, linear probes, kNN, t-SNE (pure PyTorch)."""
