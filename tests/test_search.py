"""Tie-line structure search: enumeration counts, candidates, deduplication, resume.

Everything but the last test runs on the mock potential.
"""

import itertools
import warnings

import alloyflow  # noqa: F401 - first: it pins OpenBLAS to one thread before numpy loads (6x faster relaxations)
import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure

from alloyflow.structures import StructureLibrary
from alloyflow.structures.search import (
    bct_c_over_a,
    cell_sizes,
    dilute_candidate,
    enumerate_orderings,
    parent_lattice,
    prototype_candidates,
    reference_volumes,
    target_compositions,
    vegard_volume,
)
from alloyflow.engine import ResultStore
from alloyflow.workflows.flows.search import (
    SearchResult,
    deduplicate,
    format_search_summary,
    run_search,
    write_search_outputs,
)

VOLUMES = {"Li": 20.0, "In": 26.0}


def _hnfs(n):
    """All 3x3 lower-triangular Hermite normal forms of determinant n."""
    for a in range(1, n + 1):
        for c in range(1, n + 1):
            if n % (a * c):
                continue
            f = n // (a * c)
            for b, d, e in itertools.product(range(c), range(f), range(f)):
                yield np.array([[a, 0, 0], [b, c, 0], [d, e, f]])


def _brute_force_count(lattice: str, n: int, n_li: int) -> int:
    """Symmetry-distinct orderings counted independently of icet: every labeling of every
    supercell, superperiodic ones dropped, the rest grouped with StructureMatcher."""
    parent = parent_lattice(lattice, 20.0, 1.52)
    structures = []
    for h in _hnfs(n):
        cell = Structure(parent, ["Li"], [[0, 0, 0]])
        cell.make_supercell(h.T)  # HNF columns are the supercell vectors
        for li_sites in itertools.combinations(range(n), n_li):
            s = cell.copy()
            for i in range(n):
                if i not in li_sites:
                    s.replace(i, "In")
            if len(s.get_primitive_structure()) == n:
                structures.append(s)
    # Tight tolerances: default ones lump distinct layerings of the same stoichiometry together.
    matcher = StructureMatcher(ltol=0.01, stol=0.01, angle_tol=0.1, scale=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(matcher.group_structures(structures))


@pytest.mark.parametrize("lattice", ["fcc", "bcc"])
def test_enumeration_counts(lattice):
    """fcc and bcc (same point group, so the same counts): N=2 has 2 orderings by hand
    (fcc: L1_0 and L1_1 layerings along [001] and [111]; bcc: B2 and the [110] layering);
    N=3 and N=4 are checked against an independent brute-force count. With A<->B exchange
    identified, N=3 gives 3 and N=4 gives 7 + 5 = 12, the Hart & Forcade (2008) numbers."""
    counts = {}
    for n, n_li in [(2, 1), (3, 1), (3, 2), (4, 1), (4, 2), (4, 3)]:
        comp = Composition({"Li": n_li, "In": n - n_li})
        counts[(n, n_li)] = len(enumerate_orderings(comp, lattice, n, vegard_volume(comp, VOLUMES)))
    assert counts[(2, 1)] == 2
    assert counts[(3, 1)] == counts[(3, 2)] == 3
    assert counts[(4, 1)] == counts[(4, 3)] == 7 and counts[(4, 2)] == 5
    for key in [(3, 1), (4, 1), (4, 2)]:
        assert counts[key] == _brute_force_count(lattice, *key), key


def test_bct_has_more_orderings_than_bcc():
    comp = Composition("LiIn")
    assert len(enumerate_orderings(comp, "bct", 4, 24.0, 1.52)) > len(enumerate_orderings(comp, "bcc", 4, 24.0))


def test_target_compositions_default_covers_the_missing_li_in_phases():
    formulas = {c.reduced_formula for c in target_compositions("Li-In", max_sites=16)}
    assert {"Li13In3", "Li2In", "Li5In4", "LiIn3", "LiIn", "Li3In2", "Li3In"} <= formulas
    assert "LiIn15" not in formulas  # one minority atom in a large cell: that is the dilute proxy's job
    assert [c.reduced_formula for c in target_compositions("Li-In", ["In3Li", "Li13In3"])] == ["LiIn3", "Li13In3"]
    with pytest.raises(ValueError):
        target_compositions("Li-In", ["LiSn"])
    assert cell_sizes(Composition("LiIn"), 16) == [2, 4, 6, 8]
    assert cell_sizes(Composition("Li13In3"), 16) == [16]


def test_vegard_volumes_and_bct_parent():
    lib = StructureLibrary()
    vols = reference_volumes("Li-In", lib)
    assert vegard_volume(Composition("LiIn"), vols) == pytest.approx((vols["Li"] + vols["In"]) / 2)
    ca = bct_c_over_a(lib.load("In"))
    assert 1.4 < ca < 1.6  # fct c/a ~1.08 times sqrt(2)
    assert bct_c_over_a(lib.load("Li")) is None
    comp = Composition("Li3In")
    for atoms in enumerate_orderings(comp, "bcc", 8, vegard_volume(comp, vols)):
        assert atoms.get_volume() / len(atoms) == pytest.approx(vegard_volume(comp, vols))


def test_prototypes_both_ways_round_and_scaled():
    comps = [Composition("LiIn3"), Composition("Li3In")]
    cands = prototype_candidates("Li-In", comps, VOLUMES, max_sites=4)
    names = {c.name for c in cands}
    assert "LiIn3_AB3_cP4_221_a_c_LiA" in names and "Li3In_AB3_cP4_221_a_c_LiB" in names  # L1_2 both ways
    for c in cands:
        assert c.method == "prototype" and c.formula in {"LiIn3", "Li3In"}
        assert c.structure.volume / len(c.structure) == pytest.approx(vegard_volume(c.composition, VOLUMES))


def test_dilute_candidate_is_liin35():
    cand = dilute_candidate(StructureLibrary().load("In"), 36)
    assert cand.formula == "LiIn35" and len(cand.structure) == 36 and cand.method == "dilute-substitution"


def test_the_dilute_proxy_sits_in_the_host_phase_named_after_it_not_a_lower_polymorph():
    """α-Sn lies below β-Sn on PBE-like potentials; Li in α-Sn then sat below the β-referenced hull by that gap
    (LiSn35 on the fine-tuned potential's Li-Sn hull). The proxy's host is β-Sn, the hull's zero."""
    from alloyflow.workflows.flows.search_plan import SearchContext
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    lib = StructureLibrary()
    beta, alpha, li = (lib.get(n, system="Li-Sn").structure for n in ("Sn", "Sn_alpha", "Li"))

    def doc(label, structure, e_atom):
        n = len(structure)
        return RelaxationDocument(label=label, formula=structure.composition.reduced_formula, structure=structure,
                                  input_structure=structure, energy=e_atom * n, energy_per_atom=e_atom,
                                  volume_per_atom=structure.volume / n, natoms=n, converged=True, max_force=0.0,
                                  n_steps=0, fmax=0.05, relax_cell=True, calculator={"name": "mock"},
                                  input_hash="x", elapsed_seconds=0.0).model_dump()

    docs = [doc("Li", li, -1.90), doc("Sn", beta, -3.80), doc("Sn_alpha", alpha, -3.85)]  # α 50 meV/atom lower
    ctx = SearchContext.of(docs, "Li-Sn")
    assert StructureMatcher().fit(ctx.host_structure, beta) and not StructureMatcher().fit(ctx.host_structure, alpha)
    proxy = dilute_candidate(ctx.host_structure)
    per_atom = proxy.structure.volume / len(proxy.structure)
    assert proxy.formula == "LiSn35" and per_atom == pytest.approx(beta.volume / len(beta), rel=0.02)  # α: +36 %
    # without a phase named after the host, the lowest polymorph
    only_alpha = SearchContext.of([docs[0], docs[2]], "Li-Sn")
    assert StructureMatcher().fit(only_alpha.host_structure, alpha)


def test_deduplicate_keeps_lowest_and_names_library_matches():
    a = 3.3
    b2 = Structure(Lattice.cubic(a), ["Li", "In"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    b2_super = b2.copy()
    b2_super.make_supercell([2, 1, 1])
    b2_shifted = b2.copy()
    b2_shifted.translate_sites([0, 1], [0.1, 0.2, 0.3])
    b32 = Structure.from_spacegroup("Fd-3m", Lattice.cubic(2 * a), ["Li", "In"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    items = [("b2", b2, -1.0), ("b2_super", b2_super, -1.1), ("b2_shifted", b2_shifted, -0.9), ("b32", b32, -0.5)]
    kept, dups = deduplicate(items)
    assert kept == ["b2_super", "b32"] and dups == {"b2": "b2_super", "b2_shifted": "b2_super"}
    kept, dups = deduplicate(items, references={"LiIn": b32.copy()})
    assert kept == ["b2_super"] and dups["b32"] == "LiIn"


SMALL = dict(calculator="mock", compositions=["LiIn3", "Li3In"], max_sites=4, keep_per_composition=2,
             dilute_sites=8, progress=False)


@pytest.fixture
def small_library(tmp_path):
    """Li, In and LiIn3 only: fewer library relaxations, and LiIn3 (L1_2) to be rediscovered."""
    import shutil

    from alloyflow.structures.library import DATA_DIR

    folder = tmp_path / "library"
    folder.mkdir()
    for name in ("Li.cif", "In.cif", "hypothetical/LiIn3.cif"):
        shutil.copy(DATA_DIR / name, folder)
    return lambda: StructureLibrary(user_dirs=[folder], include_bundled=False)


@pytest.fixture
def count_evaluations(monkeypatch):
    """Record every candidate single point and every relaxation actually computed."""
    import alloyflow.workflows.jobs.batched as batched
    from alloyflow.workflows.jobs.relax import RelaxMaker

    seen = {"single": [], "relax": []}
    real_eval, real_run = batched.evaluate_batch, RelaxMaker.run

    def evaluate(name, atoms_list, **kw):
        seen["single"] += [f"{a.get_chemical_formula()} {a.cell.cellpar().round(4)} {a.positions.round(4).tolist()}"
                           for a in atoms_list]
        return real_eval(name, atoms_list, **kw)

    def run(self, structure, label="", metadata=None):
        seen["relax"].append(label)
        return real_run(self, structure, label=label, metadata=metadata)

    monkeypatch.setattr(batched, "evaluate_batch", evaluate)
    monkeypatch.setattr(RelaxMaker, "run", run)
    return seen


def test_search_rerun_reuses_everything(tmp_path, count_evaluations, small_library):
    with ResultStore(tmp_path) as store:
        first = run_search("Li-In", store, library=small_library(), **SMALL)
    assert first.complete and first.jobs_computed > 0
    assert first.generated == first.screened + 1  # + the dilute proxy
    assert {c.formula for c in first.compositions} == {"LiIn3", "Li3In"}
    assert all(c.relaxed >= 1 for c in first.compositions)
    assert first.dilute.formula == "LiIn7" and first.dilute.e_above_hull is not None
    assert first.hull.calculator["name"] == "mock"
    assert all(c.relaxed and c.tight for c in first.candidates)  # survivors re-relaxed with the hull's settings
    names = {p.name for p in first.hull.phases}
    assert {c.name for c in first.candidates} <= names and "LiIn3" in names
    for c in first.near_hull:
        assert c.e_above_hull <= 0.025
    n_single, n_relax = len(count_evaluations["single"]), len(count_evaluations["relax"])
    assert n_single == first.screened and len(set(count_evaluations["single"])) == n_single

    with ResultStore(tmp_path) as store:
        second = run_search("Li-In", store, library=small_library(), **SMALL)
    # the stages are stored, so their jobs are not even looked at: only the library relaxations count as reused
    assert second.jobs_computed == 0 and 0 < second.jobs_reused < first.jobs_computed
    assert len(count_evaluations["single"]) == n_single and len(count_evaluations["relax"]) == n_relax
    assert [(c.name, c.e_above_hull) for c in second.candidates] == [(c.name, c.e_above_hull) for c in first.candidates]

    files = write_search_outputs(tmp_path, second)
    assert SearchResult.model_validate_json(files["search.json"].read_text()).screened == second.screened
    lib = StructureLibrary(user_dirs=[tmp_path / "Li-In" / "predicted"])
    for c in second.candidates:
        phase = lib.get(c.name)
        assert phase.status == "predicted" and "alloyflow search" in phase.source
        assert phase.structure.composition.reduced_formula == c.formula
    text = format_search_summary(second)
    assert "generated" in text and "LiIn7" in text and "TEST ONLY" in text


def test_budget_stop_then_resume_evaluates_nothing_twice(tmp_path, count_evaluations, small_library):
    with ResultStore(tmp_path) as store:
        cut = run_search("Li-In", store, budget_minutes=0.0, library=small_library(), **SMALL)
    assert not cut.complete and "budget" in cut.stopped and cut.screened == 0 and cut.dilute is None
    assert "INCOMPLETE" in format_search_summary(cut)
    assert write_search_outputs(tmp_path, cut) == {}  # an incomplete search leaves earlier files alone
    with ResultStore(tmp_path) as store:
        part = run_search("Li-In", store, max_new_jobs=3, library=small_library(), **SMALL)
    assert not part.complete and part.jobs_computed == 3
    with ResultStore(tmp_path) as store:
        done = run_search("Li-In", store, library=small_library(), **SMALL)
    assert done.complete and done.jobs_reused >= 3  # the library relaxations (the jobs above are left out unseen)
    singles, relaxes = count_evaluations["single"], count_evaluations["relax"]
    assert len(singles) == len(set(singles)) == done.screened  # every candidate evaluated exactly once
    assert len(relaxes) == len(set(relaxes))  # and relaxed at most once
    assert "LiIn3" in done.rediscovered.values() or any(c.formula == "LiIn3" for c in done.candidates)


def test_search_rejects_non_lithium_systems(tmp_path):
    with ResultStore(tmp_path) as store, pytest.raises(ValueError):
        run_search("In-Sn", store, calculator="mock", progress=False)


@pytest.mark.slow
def test_tiny_search_on_sevennet(tmp_path):
    """LiIn3 on 4-site fcc/bct cells plus AB3 prototypes on SevenNet-0, one relaxation
    (about 70 s on a loaded 2-core machine, most of it the library relaxations)."""
    with ResultStore(tmp_path) as store:
        result = run_search("Li-In", store, calculator="sevennet", compositions=["LiIn3"], max_sites=4,
                            keep_per_composition=1, dilute_sites=None, progress=False)
    assert result.complete, result.stopped
    (row,) = result.compositions
    assert row.screened > 10 and row.relaxed == 1
    assert result.hull.calculator["model"] == "SevenNet-0"
    new = [c for c in result.candidates if c.formula == "LiIn3"]
    if new:  # a new LiIn3 structure, with its hull distance
        assert new[0].relaxed and new[0].e_above_hull < 0.1
    else:  # or the search found the library's own LiIn3 again
        assert "LiIn3" in result.rediscovered.values()
