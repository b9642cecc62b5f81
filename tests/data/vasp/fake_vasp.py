"""A fake VASP for building mocked-VASP reference folders, and the test cases that use them.

No VASP output may ship, so the reference folders under ``tests/data/vasp``
come from a real calculation run here: ``run_fake_vasp`` reads the VASP
inputs atomate2 wrote (INCAR, POSCAR or the NEB image folders), does what
VASP would do with an ASE calculator (SevenNet-0 by default; any registry
name works, e.g. ``gpaw``) and writes the ``vasprun.xml``, ``OUTCAR`` and
``CONTCAR`` that pymatgen and emmet parse:

- NSW = 0: single point; ISIF = 3: FIRE on a FrechetCellFilter; ISIF = 2:
  FIRE on positions; IMAGES > 0: ASE NEB of the intermediate images
  (climbing image when LCLIMB), fmax = |EDIFFG|, at most NSW - 1 steps.
- Energies, forces, stress and structures are the calculator's. NEB images,
  as a VTST-patched VASP writes them: the DFT (calculator) forces in
  vasprun.xml, VTST's banner (``VTST: version``, ``NEB: SPRING``, ``NEB:
  LCLIMB``) and each step's NEB force (improved tangent, spring |SPRING|
  eV/Å², climbing term) as ``FORCES: max atom, RMS`` in the OUTCAR. Only the
  electronic structure is a placeholder (one k-point, a few metallic bands
  at the Fermi level 0 eV), marked as such in the files; trajectories are
  decimated to ``MAX_FRAMES`` ionic steps to keep the folders small.

Regenerate the references (about a minute; commit the result):

    python tests/data/vasp/fake_vasp.py [--calculator sevennet] [--only refine]

The barrier flow (``--only barriers``) plans its NEB jobs at run time, so its
references are recorded from a run of the flow itself on alloyflow's engine:
its cell relaxation replays the ``Li`` case's references (rebuild ``barriers``
after ``Li``), the endpoint and NEB jobs it creates run the fake VASP and are
kept by job name; ``barrier_reference_paths`` finds those names again, before
a run, by planning the hops of the reference's relaxed cell. Its 14-atom NEB
is the slow part (about 10 minutes on two busy cores). Rebuild it whenever
the hop planning or the supercell choice changes what the NEB jobs get.

Why hand-written XML: pymatgen has no vasprun.xml writer.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MAX_FRAMES = 6
VALENCE = {"Li_sv": 3, "In_d": 13, "Sn_d": 14}
TITEL_DATE = {"Li_sv": "10Sep2004", "In_d": "06Sep2000", "Sn_d": "06Sep2000"}
NEB_BAND_IMAGES = 3


# --------------------------------------------------------------------------- the test cases


def hull_phases():
    """Li, In, LiIn from the bundled library (the hull subset the mocked-VASP tests run)."""
    from alloyflow.structures import StructureLibrary

    lib = StructureLibrary()
    return [lib.get(name, "Li-In") for name in ("Li", "In", "LiIn")]


def bcc_li_hop():
    """Endpoints of a nearest-neighbour vacancy hop in a 2x2x2 bcc-Li cell (15 atoms)."""
    from pymatgen.core import Lattice, Structure

    a = 3.44
    s = Structure.from_spacegroup("Im-3m", Lattice.cubic(a), ["Li"], [[0, 0, 0]])
    s.make_supercell(2)
    s.remove_sites([0])  # vacancy at the origin
    j = int(np.argmin([np.linalg.norm(site.coords - [a / 2] * 3) for site in s]))
    final = s.copy()
    final.replace(j, "Li", coords=[0, 0, 0], coords_are_cartesian=True)
    return s, final


def linear_band():
    """An "ML band" for the VASP refinement test: the bcc-Li hop linearly interpolated (3 images).

    Linear, not a NEB result, so its images (the VASP inputs the references
    are checked against) do not change when the NEB code does; the ML
    energies are the mock potential's.
    """
    from alloyflow.calculators import calculator_info
    from alloyflow.workflows.jobs.labels import LabelMaker
    from alloyflow.workflows.jobs.neb import NebDocument

    ini, fin = bcc_li_hop()
    images = ini.interpolate(fin, NEB_BAND_IMAGES + 1, interpolate_lattices=False)
    energies = [LabelMaker(calculator="mock").run(s)["energy"] for s in images]
    top = int(np.argmax(energies))
    return NebDocument(label="bcc Li band", calculator=calculator_info("mock"), input_hash="0" * 64,
                       n_images=NEB_BAND_IMAGES, energies=energies, images=images,
                       forward_barrier=energies[top] - energies[0], reverse_barrier=energies[top] - energies[-1],
                       endpoint_asymmetry=energies[-1] - energies[0], climbing_image=top, converged=True, n_steps=0,
                       force_calls=0, model_calls=0, max_force=0.0, fmax=0.05, hop_distance=2.98,
                       elapsed_seconds=0.0, evaluation_seconds=0.0)


def vasp_flows(only: str | None = None):
    """(name, Flow) of the hull sub-flows, the NEB flow and the refinement flow, exactly as the tests build them."""
    from alloyflow.workflows.flows.hull import primitive
    from alloyflow.workflows.jobs.vasp import VaspNebMaker, VaspRelaxMaker
    from alloyflow.workflows.jobs.vasp_refine import VaspRefineMaker

    flows = [(p.name, VaspRelaxMaker().keyed_job(primitive(p.structure), label=p.name)) for p in hull_phases()]
    ini, fin = bcc_li_hop()
    flows.append(("Li hop", VaspNebMaker(n_images=NEB_BAND_IMAGES).keyed_job(ini, fin, label="bcc Li hop")))
    # all three statics (the test also runs the default, whose final endpoint takes the initial one's)
    flows.append(("refine", VaspRefineMaker(symmetric_endpoints=False).make(linear_band())))
    return [f for f in flows if only is None or f[0] == only]


def _runs_vasp(name: str) -> bool:
    return name.startswith(("vasp relax", "vasp static", "vasp endpoint", "vasp neb ")) and "result" not in name


def reference_paths(flows) -> dict[str, str]:
    """job name -> reference folder, for ``monkeypatch_vasp`` (only jobs that run VASP; nested flows too)."""
    paths = {}
    for _, flow in flows:
        jobs = [j for j, _ in flow.iterflow()] if hasattr(flow, "iterflow") else [flow]
        for j in jobs:
            if _runs_vasp(j.name):
                paths[j.name] = j.name.replace(" ", "_")
    return paths


BARRIER_SETTINGS = {"min_image_distance": 7.0, "max_hops": 1}
"""bcc Li's barrier case: the shortest hop in a 14-atom vacancy cell (periodic images 7.6 Å apart)."""


def barrier_flow():
    """The barrier flow of bcc Li (library phase ``Li``) with VASP, exactly as the test builds it."""
    from alloyflow.workflows.flows.barriers import BarrierFlowMaker, BarrierSettings
    from alloyflow.workflows.jobs.backends import makers_for

    return BarrierFlowMaker(makers=makers_for("vasp", n_images=NEB_BAND_IMAGES),
                            settings=BarrierSettings(**BARRIER_SETTINGS)).make(hull_phases()[0])


def barrier_reference_paths(root: Path = HERE) -> dict[str, str]:
    """job name -> reference folder for the barrier flow, its run-time NEB jobs included.

    The NEB jobs are named after the hops that ``barrier_hops`` plans in the
    relaxed cell; that cell is the output of the reference static (what the
    flow's relaxation document holds), so planning it here gives their names.
    """
    from pymatgen.io.vasp import Vasprun

    from alloyflow.workflows.flows.barriers import BarrierSettings, plan_hops
    from alloyflow.workflows.jobs.backends import makers_for

    flow = barrier_flow()
    paths = reference_paths([("barriers", flow)])
    static = next(v for k, v in paths.items() if k.startswith("vasp static"))
    relaxed = Vasprun(root / static / "outputs" / "vasprun.xml.gz", parse_dos=False,
                      parse_eigen=False, parse_potcar_file=False).final_structure
    phase = hull_phases()[0]
    plan = plan_hops(phase.name, phase.formula, relaxed, BarrierSettings(**BARRIER_SETTINGS))
    neb = makers_for("vasp", n_images=NEB_BAND_IMAGES).neb
    for hop, initial, final, _ in plan.entries:  # the label barrier_hops gives each hop
        paths |= reference_paths([("hop", neb.keyed_job(initial, final, label=f"{plan.name} hop {hop.id}"))])
    return paths


# --------------------------------------------------------------------------- fake VASP


def _atoms(structure):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def _frames(traj: list[dict]) -> list[dict]:
    if len(traj) <= MAX_FRAMES:
        return traj
    keep = sorted(set(np.linspace(0, len(traj) - 1, MAX_FRAMES).round().astype(int)))
    return [traj[k] for k in keep]


def _record(atoms) -> dict:
    from ase.units import GPa

    stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else np.zeros((3, 3))
    return {
        "cell": atoms.cell.array.copy(),
        "frac": atoms.get_scaled_positions(wrap=False).copy(),
        "energy": float(atoms.get_potential_energy()),
        "forces": atoms.get_forces().copy(),
        "stress": -stress / GPa * 10.0,  # VASP: kBar, positive = compressive
    }


def _relax(atoms, calc, isif: int, fmax: float, steps: int) -> list[dict]:
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = calc
    traj = [_record(atoms)]
    if steps <= 1:
        return traj
    target = FrechetCellFilter(atoms) if isif == 3 else atoms
    opt = FIRE(target, logfile=None)
    for _ in opt.irun(fmax=fmax, steps=steps - 2):
        if opt.nsteps:
            traj.append(_record(atoms))
    return traj


def _neb(images, calc, climb: bool, fmax: float, steps: int, spring: float = 5.0) -> list[list[dict]]:
    """ASE NEB of the intermediate images (improved tangent, VTST's spring constant).

    As VTST: the recorded forces are the calculator's, and each step's NEB
    force (max over atoms, RMS) goes to the OUTCAR's ``FORCES`` line.
    """
    from ase.mep import NEB
    from ase.optimize import FIRE

    for a in images:
        a.calc = calc
    neb = NEB(images, climb=climb, method="improvedtangent", allow_shared_calculator=True, k=spring)
    trajs = [[] for _ in images[1:-1]]
    opt = FIRE(neb, logfile=None)
    for _ in opt.irun(fmax=fmax, steps=steps - 2):
        band = neb.get_forces().reshape(len(trajs), -1, 3)
        for t, a, f in zip(trajs, images[1:-1], band):
            t.append({**_record(a), "neb_force": (float(np.linalg.norm(f, axis=1).max()),
                                                  float(np.linalg.norm(f) / np.sqrt(len(f))))})
    return trajs


def run_fake_vasp(directory: Path, calculator: str = "sevennet") -> None:
    """Do in ``directory`` what VASP would, with a registry calculator; write vasprun.xml, OUTCAR, CONTCAR."""
    from pymatgen.io.vasp import Incar, Kpoints, Poscar

    from alloyflow.calculators import get_calculator

    directory = Path(directory)
    incar = Incar.from_file(directory / "INCAR")
    kpoints = Kpoints.from_file(directory / "KPOINTS")
    potcars = (directory / "POTCAR.spec").read_text().split()
    calc = get_calculator(calculator)
    fmax, nsw = abs(float(incar.get("EDIFFG", -0.05))), int(incar.get("NSW", 0))
    t0 = time.perf_counter()
    if int(incar.get("IMAGES", 0)):
        dirs = sorted(p for p in directory.glob("[0-9][0-9]") if p.is_dir())
        structures = [Poscar.from_file(d / "POSCAR").structure for d in dirs]
        trajs = _neb([_atoms(s) for s in structures], calc, bool(incar.get("LCLIMB", False)), fmax, nsw,
                     abs(float(incar.get("SPRING", -5))))
        dt = (time.perf_counter() - t0) / max(1, len(trajs))
        for d, s, traj in zip(dirs[1:-1], structures[1:-1], trajs):
            _write_outputs(d, incar, kpoints, potcars, s, _frames(traj), dt, calculator)
        return
    structure = Poscar.from_file(directory / "POSCAR").structure
    traj = _relax(_atoms(structure), calc, int(incar.get("ISIF", 2)), fmax, nsw if nsw > 1 else 1)
    _write_outputs(directory, incar, kpoints, potcars, structure, _frames(traj), time.perf_counter() - t0, calculator)


# --------------------------------------------------------------------------- writers


def _v(rows, fmt="{:16.8f}") -> str:
    return "\n".join("    <v>" + " ".join(fmt.format(x) for x in row) + " </v>" for row in np.atleast_2d(rows))


def _structure_xml(cell, frac, name: str = "") -> str:
    tag = f'<structure name="{name}" >' if name else "<structure>"
    rec = np.linalg.inv(cell).T
    return f"""  {tag}
   <crystal>
    <varray name="basis" >
{_v(cell)}
    </varray>
    <i name="volume">{abs(np.linalg.det(cell)):16.8f} </i>
    <varray name="rec_basis" >
{_v(rec)}
    </varray>
   </crystal>
   <varray name="positions" >
{_v(frac)}
   </varray>
  </structure>"""


def _param(key, value) -> str:
    if isinstance(value, bool):
        return f'   <i type="logical" name="{key}"> {"T" if value else "F"}  </i>'
    if isinstance(value, int):
        return f'   <i type="int" name="{key}">{value:6d}</i>'
    if isinstance(value, float):
        return f'   <i name="{key}">{value:16.8f}</i>'
    return f'   <i type="string" name="{key}">{value}</i>'


def _vasprun(incar, kpoints, potcars, structure, traj, nelect: float, nbands: int, calculator: str) -> str:
    from pymatgen.core import Element

    species = [str(s.specie) for s in structure]
    types = list(dict.fromkeys(species))
    pot = {p.split("_")[0]: p for p in potcars}
    params = {"NELM": 60, "NSW": 0, "IBRION": -1, "ISIF": 2, "ISPIN": 1, "LSORBIT": False, "LNONCOLLINEAR": False,
              "LHFCALC": False, "LUSE_VDW": False, "METAGGA": "--", "GGA": "--", "LDAU": False,
              "NBANDS": nbands, "NELECT": float(nelect), "EFERMI": 0.0, "LORBIT": 0, "NEDOS": 301, "ISYM": 2,
              "ICHARG": 2, "ISTART": 0, "LEPSILON": False, "LCALCPOL": False, "LOPTICS": False, "IVDW": 0,
              "ENMAX": float(incar.get("ENCUT", 400)), "LMAXMIX": 2, "NELMIN": 2, "EDIFF": 1e-4, "EDIFFG": 1e-3,
              "POTIM": 0.5, "ISMEAR": 1, "SIGMA": 0.2, "PREC": "normal", "ALGO": "Normal", "LREAL": False,
              "LASPH": False, "LWAVE": True, "LCHARG": True, "LVTOT": False, "LELF": False, "LAECHG": False,
              "NPAR": 1, "KPAR": 1, "NCORE": 1, "LMETAGGA": False, "AEXX": 0.0, "HFSCREEN": 0.0}
    params.update({k: v for k, v in incar.items() if not isinstance(v, list)})
    incar_xml = "\n".join(_param(k, v) for k, v in incar.items() if not isinstance(v, list))
    calcs = []
    for k, f in enumerate(traj):
        e = f["energy"]
        energy = f"""   <energy>
    <i name="e_fr_energy">{e:18.8f} </i>
    <i name="e_wo_entrp">{e:18.8f} </i>
    <i name="e_0_energy">{e:18.8f} </i>
   </energy>"""
        extra = ""
        if k == len(traj) - 1:
            eig = "\n".join(f"       <r>{x:10.4f}{o:10.4f} </r>" for x, o in zip(np.linspace(-3, 3, nbands),
                            np.clip(0.5 - np.linspace(-3, 3, nbands) / 0.5, 0, 1)))
            extra = f"""
  <!-- placeholder electronic structure: the fake VASP computes no bands -->
  <eigenvalues>
   <array>
    <dimension dim="1">band</dimension>
    <dimension dim="2">kpoint</dimension>
    <dimension dim="3">spin</dimension>
    <field>eigene</field>
    <field>occ</field>
    <set>
     <set comment="spin 1">
      <set comment="kpoint 1">
{eig}
      </set>
     </set>
    </set>
   </array>
  </eigenvalues>
  <dos>
   <i name="efermi">      0.00000000 </i>
   <total>
    <array>
     <dimension dim="1">gridpoints</dimension>
     <dimension dim="2">spin</dimension>
     <field>energy</field>
     <field>total</field>
     <field>integrated</field>
     <set>
      <set comment="spin 1">
       <r>    -3.0000     1.0000     0.0000 </r>
       <r>     0.0000     1.0000     3.0000 </r>
       <r>     3.0000     1.0000     6.0000 </r>
      </set>
     </set>
    </array>
   </total>
  </dos>"""
        calcs.append(f""" <calculation>
  <scstep>
{energy}
  </scstep>
{_structure_xml(f["cell"], f["frac"])}
  <varray name="forces" >
{_v(f["forces"])}
  </varray>
  <varray name="stress" >
{_v(f["stress"])}
  </varray>
{energy}{extra}
 </calculation>""")
    atoms_rows = "\n".join(f"    <rc><c>{s}</c><c>{types.index(s) + 1:4d}</c></rc>" for s in species)
    type_rows = "\n".join(
        f"    <rc><c>{species.count(t):4d}</c><c>{t}</c><c>{Element(t).atomic_mass:16.8f}</c>"
        f"<c>{VALENCE.get(pot[t], 1):16.8f}</c><c>  PAW_PBE {pot[t]} {TITEL_DATE.get(pot[t], '')}</c></rc>"
        for t in types
    )
    divisions = " ".join(str(int(x)) for x in kpoints.kpts[0])
    first, last = traj[0], traj[-1]
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!-- written by alloyflow's fake VASP (tests/data/vasp/fake_vasp.py): {calculator} energies, forces, stress -->
<modeling>
 <generator>
  <i name="program" type="string">vasp </i>
  <i name="version" type="string">6.4.2  </i>
  <i name="subversion" type="string">fake (alloyflow tests; {calculator}) </i>
  <i name="platform" type="string">LinuxGNU </i>
  <i name="date" type="string">2026 01 01 </i>
  <i name="time" type="string">00:00:00 </i>
 </generator>
 <incar>
{incar_xml}
 </incar>
 <kpoints>
  <generation param="Gamma">
   <v type="int" name="divisions">{divisions} </v>
   <v name="usershift">      0.00000000       0.00000000       0.00000000 </v>
  </generation>
  <varray name="kpointlist" >
    <v>       0.00000000       0.00000000       0.00000000 </v>
  </varray>
  <varray name="weights" >
    <v>       1.00000000 </v>
  </varray>
 </kpoints>
 <parameters>
{chr(10).join(_param(k, v) for k, v in params.items())}
 </parameters>
 <atominfo>
  <atoms>{len(species):8d} </atoms>
  <types>{len(types):8d} </types>
  <array name="atoms" >
   <dimension dim="1">ion</dimension>
   <field type="string">element</field>
   <field type="int">atomtype</field>
   <set>
{atoms_rows}
   </set>
  </array>
  <array name="atomtypes" >
   <dimension dim="1">type</dimension>
   <field type="int">atomspertype</field>
   <field type="string">element</field>
   <field>mass</field>
   <field>valence</field>
   <field type="string">pseudopotential</field>
   <set>
{type_rows}
   </set>
  </array>
 </atominfo>
{_structure_xml(first["cell"], first["frac"], "initialpos")}
{chr(10).join(calcs)}
{_structure_xml(last["cell"], last["frac"], "finalpos")}
</modeling>
"""


def _outcar(incar, potcars, traj, nelect: float, nbands: int, natoms: int, seconds: float, calculator: str) -> str:
    lines = [f" vasp.6.4.2 fake (alloyflow tests; energies from {calculator})", ""]
    lines += [f"   POTCAR:    PAW_PBE {p} {TITEL_DATE.get(p, '')}" for p in potcars]
    lines += ["", " Dimension of arrays:",
              f"   k-points           NKPTS =      1   k-points in BZ     NKDIM =      1   number of bands    NBANDS= {nbands:6d}",
              f"   number of dos      NEDOS =      3   number of ions     NIONS = {natoms:6d}",
              "   total plane-waves  NPLWV =   1000", "", " Ionic relaxation"]
    lines += [f"   {key:<6} = {incar.get(key, default)!s:>8}" for key, default in
              (("NSW", 0), ("IBRION", -1), ("ISIF", 2), ("ISPIN", 1), ("ENCUT", 400), ("EDIFFG", 0))]
    lines += ["", f"   NELECT =  {nelect:12.4f}    total number of electrons", ""]
    if int(incar.get("IMAGES", 0)) and ("LCLIMB" in incar or "IOPT" in incar):  # a VTST-patched VASP
        lines += [" VTST: version 4.1, (fake: alloyflow tests)", "", " CHAIN: Running the NEB",
                  f" NEB:          SPRING     {float(incar.get('SPRING', -5)):9.6f}",
                  f" NEB:          LCLIMB      {'T' if incar.get('LCLIMB', True) else 'F'}", ""]
    for f in traj:
        e = f["energy"]
        drift = np.asarray(f["forces"]).sum(axis=0)
        lines += [
            f" total drift:                          {drift[0]:12.6f}{drift[1]:12.6f}{drift[2]:12.6f}",
            f" number of electron {nelect:15.7f} magnetization       0.0000000",
            "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
            "  ---------------------------------------------------",
            f"  free  energy   TOTEN  = {e:18.8f} eV",
            "",
            f"  energy  without entropy= {e:18.8f}  energy(sigma->0) = {e:18.8f}",
            "",
        ]
        if "neb_force" in f:
            lines += [f"  FORCES: max atom, RMS {f['neb_force'][0]:12.6f}{f['neb_force'][1]:12.6f}", ""]
    lines += [
        " E-fermi :   0.0000     XC(G=0): -10.0000     alpha+bet : -10.0000",
        "",
        " General timing and accounting informations for this job:",
        " ========================================================",
        "",
        f"                  Total CPU time used (sec):    {seconds:12.3f}",
        f"                            User time (sec):    {seconds:12.3f}",
        "                          System time (sec):           0.000",
        f"                         Elapsed time (sec):    {seconds:12.3f}",
        "",
        "                   Maximum memory used (kb):      100000.",
        "                   Average memory used (kb):          N/A",
        "",
        "                          Minor page faults:            0",
        "                          Major page faults:            0",
        " Voluntary context switches:            0",
    ]
    return "\n".join(lines) + "\n"


def _write_outputs(directory: Path, incar, kpoints, potcars, structure, traj, seconds, calculator) -> None:
    from pymatgen.core import Structure
    from pymatgen.io.vasp import Poscar

    pot = {p.split("_")[0]: p for p in potcars}
    nelect = float(sum(VALENCE.get(pot[str(s.specie)], 1) for s in structure))
    nbands = max(8, int(nelect / 2 + len(structure) / 2) + 4)
    (directory / "vasprun.xml").write_text(_vasprun(incar, kpoints, potcars, structure, traj, nelect, nbands, calculator))
    (directory / "OUTCAR").write_text(_outcar(incar, potcars, traj, nelect, nbands, len(structure), seconds, calculator))
    last = traj[-1]
    final = Structure(last["cell"], [s.specie for s in structure], last["frac"])
    Poscar(final).write_file(directory / "CONTCAR")


# --------------------------------------------------------------------------- reference folders


def _copy(src: Path, dst: Path, names) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).exists():
            with open(src / name, "rb") as fi, gzip.GzipFile(dst / f"{name}.gz", "wb", mtime=0) as fo:
                shutil.copyfileobj(fi, fo)


def build_references(calculator: str = "sevennet", root: Path = HERE, only: str | None = None) -> None:
    """Run every VASP job of the test flows through the fake VASP and keep inputs/outputs by job name.

    ``only``: one case of ``vasp_flows`` (``Li``, ``In``, ``LiIn``, ``Li hop``,
    ``refine``) or ``barriers`` (the barrier flow of bcc Li, whose relaxation
    replays the ``Li`` references).
    """
    import tempfile

    import atomate2.vasp.jobs.base
    import atomate2.vasp.jobs.neb
    import atomate2.vasp.run
    from atomate2.utils.testing.vasp import fake_run_vasp as replay_vasp
    from jobflow import CURRENT_JOB, Flow, JobStore, run_locally
    from maggma.stores import MemoryStore
    from pymatgen.io.vasp.sets import VaspInputSet

    import alloyflow.calculators.dft  # noqa: F401  (registers "vasp")
    from alloyflow.engine import ResultStore, run_flow

    flows = vasp_flows(only)
    paths = reference_paths(flows)
    replay: dict[str, str] = {}  # jobs served from existing references (the barrier flow's relaxation)
    recorded: dict[str, str] = {}
    inputs = ("INCAR", "KPOINTS", "POSCAR", "POTCAR.spec")
    outputs = ("vasprun.xml", "OUTCAR", "CONTCAR")

    def fake_run_vasp(*args, **kwargs):
        name = CURRENT_JOB.job.name
        if name in replay:
            replay_vasp(root / replay[name])  # checks the inputs against the reference, copies its outputs
            return
        # the barrier flow's NEB jobs exist only at run time: named as reference_paths names them
        recorded[name] = paths.get(name, name.replace(" ", "_"))
        ref = root / recorded[name]
        shutil.rmtree(ref, ignore_errors=True)
        cwd = Path.cwd()
        _copy(cwd, ref / "inputs", inputs)
        for d in sorted(cwd.glob("[0-9][0-9]")):
            _copy(d, ref / "inputs" / d.name, ("POSCAR",))
        run_fake_vasp(cwd, calculator)
        _copy(cwd, ref / "outputs", inputs + outputs)  # a VASP folder keeps its inputs; emmet reads them
        for d in sorted(cwd.glob("[0-9][0-9]")):
            _copy(d, ref / "outputs" / d.name, ("POSCAR", *outputs))

    orig = VaspInputSet.get_input_set

    def spec_input_set(self, *args, **kwargs):
        kwargs["potcar_spec"] = True  # no POTCARs here: POTCAR.spec, as atomate2's tests do
        return orig(self, *args, **kwargs)

    for mod in (atomate2.vasp.run, atomate2.vasp.jobs.base, atomate2.vasp.jobs.neb):
        mod.run_vasp = fake_run_vasp
    VaspInputSet.get_input_set = spec_input_set
    VaspInputSet.nelect = property(lambda self: 12)
    if flows:
        store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
        with tempfile.TemporaryDirectory() as tmp:
            run_locally(Flow([f for _, f in flows]), store=store, create_folders=True, root_dir=tmp,
                        ensure_success=True, log=False, raise_immediately=True)
    if only in (None, "barriers"):
        flow = barrier_flow()
        replay.update(reference_paths([("barriers", flow)]))  # the Li case's relax and static
        with tempfile.TemporaryDirectory() as tmp, ResultStore(tmp) as store:
            run_flow(flow, store)
        expected = {k: v for k, v in barrier_reference_paths(root).items() if k not in replay}
        if recorded != expected:
            raise RuntimeError(f"barrier references {sorted(recorded)} != planned {sorted(expected)}")
    print(f"wrote {len(recorded)} reference folders under {root}: {', '.join(sorted(recorded.values()))}")


if __name__ == "__main__":
    calc = sys.argv[sys.argv.index("--calculator") + 1] if "--calculator" in sys.argv else "sevennet"
    build_references(calc, only=sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None)
