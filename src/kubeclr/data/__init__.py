"""The dataset: read every supported format safely, split it, summarise it.

- :mod:`~kubeclr.data.formats` — ``data.format`` → one split contract (labelled splits + unlabelled images)
- :mod:`~kubeclr.data.cifar`, :mod:`~kubeclr.data.cifar100`, :mod:`~kubeclr.data.stl10` — the tarball layouts
- :mod:`~kubeclr.data.folder` — the image folder layout; :mod:`~kubeclr.data.ingest` — its decoding pool
- :mod:`~kubeclr.data.images` — safe decoding of one untrusted image file
- :mod:`~kubeclr.data.safe_tar`, :mod:`~kubeclr.data.archives` — tar reading, safe tar/zip extraction
- :mod:`~kubeclr.data.safe_pickle` — allowlist unpickler for the CIFAR batch files
- :mod:`~kubeclr.data.sample`, :mod:`~kubeclr.data.sample_folder` — the synthetic offline datasets
- :mod:`~kubeclr.data.split` — ``batch5`` / ``random:<f>`` splits, stratified limits
- :mod:`~kubeclr.data.resize`, :mod:`~kubeclr.data.memory` — resizing at ingestion, memory checks
- :mod:`~kubeclr.data.stats` — exact streaming per-channel mean/std
"""
