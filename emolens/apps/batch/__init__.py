"""``emolens batch``: a whole archive of photos and videos analysed on Ray into a Parquet dataset.

    >>> from emolens.apps.batch import BatchOptions, run_batch
    >>> report = run_batch(["archive/"], "runs/archive", BatchOptions(fps=5))   # Ray embedded, loopback only
    >>> import pandas as pd; pd.read_parquet("runs/archive/faces")              # no emolens needed to read it

Modules: ``inputs`` (folders, globs, manifests → sources → work items), ``analysis`` (one work
item on a worker; parts merged), ``store`` (the batch folder: Parquet tables, ledger),
``cluster`` (Ray: embedded or a cluster, the task), ``runner`` (the run). docs/batch.md has the
schema, the cluster set-up and the sizing.
"""

from emolens.apps.batch.analysis import BatchOptions
from emolens.apps.batch.runner import BatchReport, run_batch

__all__ = ["BatchOptions", "BatchReport", "run_batch"]
