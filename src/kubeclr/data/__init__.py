"""The dataset: fetch, verify, safely parse, split and summarise CIFAR-10.

- :mod:`~kubeclr.storage.sources` — URI dispatch, cached resumable download, MD5, mirror
- :mod:`~kubeclr.data.safe_tar` — read tar members without extracting; refuse unsafe ones
- :mod:`~kubeclr.data.safe_pickle` — allowlist unpickler for the batch files
- :mod:`~kubeclr.data.cifar` — the tarball layout, validation, and writing it
- :mod:`~kubeclr.data.sample` — the synthetic offline ``sample`` dataset
- :mod:`~kubeclr.data.split` — ``batch5`` / ``random:<f>`` splits, stratified limits
- :mod:`~kubeclr.data.stats` — exact streaming per-channel mean/std
"""
