"""The NUMA rehearsal: numa-lab's real path on a real two-node Linux kernel, in a small emulated VM.

``vm`` boots the guest (virtme-ng, QEMU), ``guest`` runs inside it (topology, a refused placement, the
command line's plan -> lanes -> records -> DuckDB -> report, then the gate), ``proofs`` checks what came back
from the records and the database, and says it in one line.
"""
