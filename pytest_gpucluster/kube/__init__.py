"""Cluster access layer: the only package that imports `kubernetes` (client.py, kubeconfig.py; the modules that call
the API build on them). Importing the package loads no client: the I/O-free modules (objects, quantity, taints,
placement, resources, errors) are what the pure judges in checks/ may import."""
