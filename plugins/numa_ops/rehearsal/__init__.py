"""The NUMA rehearsal: numa-lab's real path on a real two-node Linux kernel, in a small emulated VM.

``vm`` boots the guest (virtme-ng, QEMU), ``guest`` runs inside it (topology, a refused placement, the
command line's plan -> lanes -> records), ``finish`` loads the records into DuckDB, writes the reports and runs
the gate on the host, and ``proofs`` checks it all from the records and the database, and says it in one line.
"""
