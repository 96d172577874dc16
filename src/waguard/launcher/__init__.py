"""The launcher: executes waguard's playbook runs, each in its own process forked from a pre-imported parent.

`waguard up` starts it (and `waguard worker` on its own). Runs start in milliseconds instead of the
seconds a fresh interpreter takes to import Prefect, a SIGKILL of one run never touches another, and
a dead run's slot is freed at once. See launcher.py for the flow of a run, zygote.py for the fork.
"""

from waguard.launcher.pickup import notify_launcher
from waguard.launcher.rundir import hand_over_current_leases, hand_over_lease, pid_of

__all__ = ["hand_over_current_leases", "hand_over_lease", "notify_launcher", "pid_of"]
