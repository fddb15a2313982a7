"""Link Loom: a workflow orchestrator whose workflows are changed the way code is changed.

Flows are DAGs of steps declared in versioned spec files. The database is the source of truth for
every run; changes to flows arrive as proposals that are validated, run in a sandbox against
recorded production traffic, diffed, reviewed and promoted.
"""

from __future__ import annotations

__version__ = "0.1.0"
