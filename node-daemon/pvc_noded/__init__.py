"""The node daemon ``pvcnoded``: runs on every hypervisor and carries out the cluster's intent."""
