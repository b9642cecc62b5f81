"""Shared fixtures."""

import numpy as np
import pytest


def bcc_li_hop():
    """(initial, final) of a nearest-neighbour vacancy hop in a 15-atom bcc-Li cell (2x2x2 less one)."""
    from pymatgen.core import Lattice, Structure

    a = 3.44
    ini = Structure.from_spacegroup("Im-3m", Lattice.cubic(a), ["Li"], [[0, 0, 0]])
    ini.make_supercell(2)
    ini.remove_sites([0])
    j = int(np.argmin([np.linalg.norm(site.coords - [a / 2] * 3) for site in ini]))
    fin = ini.copy()
    fin.replace(j, "Li", coords=[0, 0, 0], coords_are_cartesian=True)
    return ini, fin


@pytest.fixture(scope="session")
def sevennet_bcc_li_band():
    """SevenNet-0 CI-NEB band of a vacancy hop in a 15-atom bcc-Li cell (3 images; ``bcc_li_hop``).

    Built once per session: the GPAW tests (single points, refinement) both
    start from it, and a second identical band would only cost CI time.
    """
    from alloyflow.workflows.jobs.neb import NebMaker

    ini, fin = bcc_li_hop()
    return NebMaker(calculator="sevennet", n_images=3, fmax=0.05).run(ini, fin, label="bcc Li hop")


@pytest.fixture(autouse=True)
def _private_user_config(tmp_path_factory, monkeypatch):
    """Each test gets its own $XDG_CONFIG_HOME: the trusted-potential record (alloyflow.calculators.user) is per user."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


@pytest.fixture(autouse=True)
def _one_job_at_a_time(monkeypatch):
    """Flows run one job at a time unless a test asks for workers (the command line would start one per core)."""
    monkeypatch.setenv("ALLOYFLOW_WORKERS", "1")
