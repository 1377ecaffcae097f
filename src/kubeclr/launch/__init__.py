"""How pretraining runs: one interface, one module per engine.

An engine trains ``cfg`` on the step's files and returns the pretraining
summary; which one runs follows from the pretrain step's ``nodes`` and
``gpus_per_node`` (:func:`kubeclr.launch.engines.choose_engine`):

- :mod:`~kubeclr.launch.inprocess` — in the step's own process (one device);
- :mod:`~kubeclr.launch.torchrun` — ``torchrun --standalone``, one process per GPU of the pod;
- :mod:`~kubeclr.launch.multinode` — a ``TrainJob`` (Kubeflow Trainer v2) or ``PyTorchJob`` (Training
  Operator v1) of ``nodes`` pods, by ``cluster.engine``.

Every engine ends in :func:`kubeclr.launch.process.train_and_save`; the pods'
settings are :class:`kubeclr.launch.settings.LaunchSettings`.
"""
