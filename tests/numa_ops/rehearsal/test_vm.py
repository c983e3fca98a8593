"""The guest's command line: two nodes at distance 21, software emulation, outputs writable, argv only."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from numa_ops.rehearsal import guest, vm


@pytest.fixture
def booted(tmp_path) -> vm.Guest:
    return vm.Guest(Path("/venv/bin/vng"), Path("/boot/vmlinuz-6.1.0-57-amd64"), Path("/venv"),
                    Path("/repo/plugins"), tmp_path / "out dir")


def _option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_two_nodes_at_distance_21_under_software_emulation(booted):
    argv = vm.vng_argv(booted)
    assert "--disable-kvm" in argv and _option(argv, "--cpus") == ["2"]
    assert _option(argv, "--numa") == ["3G,cpus=0", "3G,cpus=1"] and _option(argv, "--memory") == ["6G"]
    assert _option(argv, "--numa-distance") == ["0,1=21"]
    assert f"--rwdir={booted.outputs}" in argv
    assert _option(argv, "--run") == [str(booted.kernel)]


def test_the_guest_command_survives_the_shell(booted):
    """virtme-ng takes one command string: quoting must give back the argv, a space in a path included."""
    argv = shlex.split(_option(vm.vng_argv(booted), "--exec")[0])
    assert argv[-5:] == ["/venv/bin/python", "-m", "numa_ops.rehearsal.guest", "/venv", vm.VENV_TAG]
    assert f"NUMA_LAB_OUTPUTS={booted.outputs}" in argv and "PYTHONPATH=/repo/plugins" in argv


def test_the_refused_plan_differs_only_in_its_nodes():
    ok, refused = guest.run_args(), guest.refused_args()
    assert [a for a in ok if a not in refused] == ["experiment.hardware.numa_nodes=all"]
    assert [a for a in refused if a not in ok] == ["experiment.hardware.numa_nodes=[2]"]


def test_static_elf_check_on_a_real_binary(tmp_path):
    assert vm.is_static_elf(Path("/bin/sh")) is False  # dynamically linked everywhere
    (tmp_path / "text").write_text("not an ELF")
    assert vm.is_static_elf(tmp_path / "text") is False


def test_newest_kernel_image(tmp_path):
    for name in ("vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-57-amd64", "config-6.1.0-99-amd64"):
        (tmp_path / name).write_text("")
    assert vm.kernel_image(tmp_path) == tmp_path / "vmlinuz-6.1.0-57-amd64"
    assert vm.kernel_image(tmp_path / "none") is None


def test_the_guest_reads_the_report_bundle_the_host_built(booted, tmp_path, monkeypatch, request):
    """Bundling Vega under emulation takes minutes: the host builds it and hands its cache folder to the guest."""
    import vl_convert
    from numa_ops.rehearsal.__main__ import share_report_bundle
    from numa_ops.report import vega_bundle

    monkeypatch.setenv("NUMA_LAB_CACHE", "")  # recorded, so what the rehearsal sets is undone after the test
    monkeypatch.delenv("NUMA_LAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda vl_version: f"bundle {vl_version}")
    vega_bundle.javascript_bundle.cache_clear()
    request.addfinalizer(vega_bundle.javascript_bundle.cache_clear)  # the planted bundle is not remembered
    share_report_bundle()
    assert list((tmp_path / "xdg" / "numa-lab").glob("vega-bundle-*.js"))
    argv = shlex.split(_option(vm.vng_argv(booted), "--exec")[0])
    assert f"NUMA_LAB_CACHE={tmp_path / 'xdg' / 'numa-lab'}" in argv
