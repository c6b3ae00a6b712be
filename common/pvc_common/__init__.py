"""Shared library of the cluster manager: schema, store adapter, pure core and operations.

The CLI (``pvc``), the API daemon (``pvcapid``) and the node daemon (``pvcnoded``) all
reach ZooKeeper only through this package, so that the tree has one definition.
"""

__version__ = "0.1.0"
