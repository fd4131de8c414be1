"""``python -m lossbench.report``: see :mod:`lossbench.report.write`."""

from lossbench.report.write import main

main()
