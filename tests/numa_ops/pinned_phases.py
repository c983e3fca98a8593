"""A phases.yaml with one study on every GPU host and one pinned to host ``gpu-b`` (multi-host tests)."""

PINNED_PHASES = """
phase1_framework_validation:
  title: t
  goal: g
  question: q
  studies:
    everywhere: {experiment: tiny}
    only_b: {experiment: tiny, hosts: [gpu-b]}
"""
