"""A deterministic simulator of a cluster, running the project's real decision core.

The node daemons' reconcile decisions (``pvc_common.reconcile``), flush/ready/recovery
plans and dead-node judgements (``pvc_common.ha``), placement and the lifecycle rules run
unchanged; the daemons' loops, libvirtd, ZooKeeper and the BMCs are in-process stand-ins
on a virtual clock. See ``tests/scenarios/README.md``.
"""

from .invariants import InvariantViolation
from .scenario import Scenario, Step, load_scenario, run, run_scenario
from .simulation import ClusterSpec, NodeSpec, Settings, Simulation

__all__ = [
    "ClusterSpec",
    "InvariantViolation",
    "NodeSpec",
    "Scenario",
    "Settings",
    "Simulation",
    "Step",
    "load_scenario",
    "run",
    "run_scenario",
]
