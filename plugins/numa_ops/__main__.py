"""``python -m numa_ops``: see :mod:`numa_ops.cli`."""

import sys

if __name__ == "__main__":
    from numa_ops.cli import main

    sys.exit(main())
