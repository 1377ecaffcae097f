"""Evaluation of learned representations and the run's report.

features (frozen-encoder extraction), linear (logistic-regression probe),
seed_protocol (the seed article's trained linear layer and MoCo's sanity
check), knn (weighted kNN monitor), tsne (exact t-SNE), charts (inline SVG)
and report (HTML, Markdown, metrics.json).
"""
