"""The ML core: SimCLR's method in five modules, and what runs it beside them.

The method (Chen et al. 2020, arXiv:2002.05709), one module each:

- :mod:`~kubeclr.core.augment` — the augmentation: crop, flip, colour distortion, grayscale, blur,
  batched on the device, every random number drawn up front (colour ops included);
- :mod:`~kubeclr.core.model` — ResNet encoder f(·) and projection head g(·), and reading weights
  (``torch.load(weights_only=True)`` in one place: trained encoders, ``model.init``, checkpoints);
- :mod:`~kubeclr.core.loss` — NT-Xent, contrasting against the global batch under DDP;
- :mod:`~kubeclr.core.optim` — LARS, the learning-rate scaling and the warm-up + cosine schedule;
- :mod:`~kubeclr.core.train` — the training loop: batches per rank, the background prefetch,
  step timing, the :class:`~kubeclr.core.train.Callback` hooks, the kNN monitor's epochs.

Beside them, what runs the method: :mod:`~kubeclr.core.checkpoint` (checkpoints in object
storage, what a run's state is and how it resumes), :mod:`~kubeclr.core.compiled`
(``torch.compile`` with counted graphs and an eager fallback), :mod:`~kubeclr.core.device`
(device, precision, memory format), :mod:`~kubeclr.core.distributed` (process groups, DDP) and
:mod:`~kubeclr.core.health` (did the loss leave chance, did the features beat random ones).

Pure PyTorch: imports no kfp, boto3, kubernetes or prometheus_client and never
hard-codes a device. Storage and metrics reach it through small interfaces
(:class:`~kubeclr.core.checkpoint.Store`, :class:`~kubeclr.core.train.Callback`);
the kNN monitor itself is :func:`kubeclr.eval.knn.knn_monitor`, handed to the loop as a function.
"""
