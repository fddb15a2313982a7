"""Flow specs: the canonical model, loading every accepted shape, validation, the flows repo.

Key contracts:
- ``loading.load_flow(text)`` returns a ``spec.FlowSpec`` or raises ``errors.SpecInvalid``
  (never anything else, whatever the input); ``loading.check_flow`` returns every problem
  with file, line, column and JSON path instead of raising.
- Every accepted shape (canonical, Link Loom ``tasks``, Automata ``config``, MBFlow
  ``workflow``) becomes the same canonical model; ``loading.content_hash`` is equal for equal
  meaning, whatever the shape.
- Templates are data (``templates``): validation parses them, it never renders them.
"""

from __future__ import annotations
