"""Keep pyarrow out of the service process: imported first by `serving/service.py`.

The service reads no Parquet, but pandas imports pyarrow whenever it is installed (the training
side needs it for Parquet cohorts and the model store), and its shared libraries add some
60 MB to the resident set of every worker (issue 16 bounds the serving process, a 10 MB record
included, at 400 MB). Marking pyarrow absent before pandas is first imported makes pandas go
without it, as on an installation without pyarrow. Where pandas is already loaded (a test
session, an in-process tool) this does nothing, so nothing that already has pyarrow loses it.
"""

from __future__ import annotations

import sys

if "pandas" not in sys.modules:
    sys.modules.setdefault("pyarrow", None)  # type: ignore[arg-type]
