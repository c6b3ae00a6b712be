"""Defects of the real code that the simulator has found, and how a run can step past them.

Scenario tests always run the real behaviour: each defect has a scenario that shows it
(``known_bug`` in its ``cluster.yaml``; the test is an expected failure until the defect
is fixed). The property test needs to get past them to find anything else, so it runs
with *workarounds*: for a defect of a daemon, the simulator models the proposed fix; for
a defect of bookkeeping or reporting, the matching check is relaxed. When a defect is
fixed in the real code, mirror the fix in the simulator, delete its entry here, and
remove its scenario's ``known_bug`` line (the scenario test fails as soon as the
scenario stops breaking an invariant, as a reminder); the scenario stays as a regression
test. Fixed so far (dce53f6): a VM listed nowhere right after a live migration, a fence
recorded over a node that came back, a VM left 'shutdown' on a fenced node, a fenced
node's stale list holding up waits, and lastnode equal to node after a forced migration
home or a recovery onto it. Fixed later: a departed VM dropped from its source's list
before its target's list could be trusted about it (departed-listing).
"""

from __future__ import annotations

#: Workaround name -> the defect it steps past, and what the workaround does.
KNOWN_BUGS: dict[str, str] = {
    "wait-done-before-running": (
        "pvc_common.vm_wait.judge counts a start or a migration as done once the VM is "
        "listed on its node alone and its row version is newer than the request's. Any "
        "write satisfies the version check, not only the daemon's rewrite after the VM "
        "runs: a shutdown migration's hand-over (state start), or an unrelated 'vm meta' "
        "during a start; and a VM is listed from just before it starts (or, for a dead "
        "target, by its last keepalive). So '--wait' and flush/ready outcomes report "
        "'running on <node>' while the VM is only being started, or not at all. "
        "Workaround: that truthfulness check is relaxed."
    ),
    "start-rewrite-lost": (
        "pvc_common.vm_wait.judge waits for a daemon to rewrite the VM after a start "
        "request; no daemon does when it has nothing to do (a stop then a start before it "
        "acted: the VM never stopped, reconcile says Kind.NONE), so 'pvc vm start --wait' "
        "runs into its timeout although the VM runs. Workaround: such a wait counts as "
        "settled at the end of a run."
    ),
    "wait-superseded": (
        "pvc_common.vm_wait.wait_for_vm and maintenance.wait_for_maintenance do not notice "
        "a later request on the same VM or node (a stop then a start, or a ready that "
        "autostarts the VM again; a flush then a ready, whose record replaces the flush's "
        "at once, even its 'aborted'): the earlier --wait runs into its timeout. "
        "Workaround: such a wait counts as settled."
    ),
    "wait-fenced-maintenance": (
        "pvc_common.maintenance.wait_for_maintenance only ends on a record of its own kind; "
        "a node fenced during its flush gets a fence/recovery record instead, so 'pvc node "
        "flush --wait' runs into its timeout (1800 s). Workaround: such a wait counts as "
        "settled."
    ),
}

#: Every workaround, for the property test.
ALL = frozenset(KNOWN_BUGS)
