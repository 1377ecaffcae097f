"""The ML core: augmentation, model, loss, optimiser, training loop, checkpoints.

Pure PyTorch: imports no kfp, boto3, kubernetes or prometheus_client and never
hard-codes a device. Storage and metrics reach it through small interfaces
(:class:`~kubeclr.core.checkpoint.Store`, :class:`~kubeclr.core.callbacks.Callback`).
"""
