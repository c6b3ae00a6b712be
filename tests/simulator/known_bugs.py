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
before its target's list could be trusted about it (departed-listing); waits that took
any write of the VM for the daemon's confirmation (wait-done-before-running), that never
ended when nothing had to be done (start-rewrite-lost), when a later request replaced
theirs (wait-superseded), or when the node was fenced during its flush
(wait-fenced-maintenance). None is open now.
"""

from __future__ import annotations

#: Workaround name -> the defect it steps past, and what the workaround does.
KNOWN_BUGS: dict[str, str] = {}

#: Every workaround, for the property test.
ALL = frozenset(KNOWN_BUGS)
