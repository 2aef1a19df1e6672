"""Linux made to look like Windows/macOS to Python, for CI: put this directory on PYTHONPATH.

Removes what those systems lack and rlcore must not need: os.fork, CPU affinity
(os.sched_getaffinity / sched_setaffinity) and the fork and forkserver start methods of
multiprocessing (Windows has spawn only). Python imports sitecustomize in every process that sees
PYTHONPATH, so stage subprocesses (DVC's) and spawned workers inherit the removal.
"""

import multiprocessing
import multiprocessing.context as context
import os

for name in ("fork", "forkpty", "sched_getaffinity", "sched_setaffinity"):
    if hasattr(os, name):
        delattr(os, name)

for method in ("fork", "forkserver"):
    context._concrete_contexts.pop(method, None)
context._default_context = context.DefaultContext(context._concrete_contexts["spawn"])
context.DefaultContext.get_all_start_methods = lambda self: ["spawn"]
for attr in [name for name in dir(context._default_context) if not name.startswith("_")]:
    setattr(multiprocessing, attr, getattr(context._default_context, attr))  # as multiprocessing/__init__ does
os.environ["RLCORE_EMULATED_OS"] = "spawn-only"
