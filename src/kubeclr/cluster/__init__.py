"""Talking to clusters: the Kubeflow Pipelines API, the Kubernetes API, training job objects."""
