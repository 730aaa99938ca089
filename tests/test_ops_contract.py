"""The op contract is written once (vgrpo.ops.checks) and every other copy is generated or checked.

- csrc/contract.h (weighting enum, schemas, MAE_EPS of the C++ library) must equal what
  `python -m vgrpo.ops.contract_header` writes, byte for byte;
- the built C++ library must have registered exactly those schemas (a stale build fails);
- the Triton kernels compare WEIGHTING with named constants, never with a bare int.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from tests.ops_cases import skip_no_cpp
from vgrpo.ops import checks, contract_header
from vgrpo.ops.checks import SCHEMAS, WEIGHTING_CODES

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "contract.h"


def test_committed_header_is_the_generated_one():
    assert HEADER.read_text() == contract_header.render(), (
        "csrc/contract.h differs from the Python contract; regenerate it with "
        "`python -m vgrpo.ops.contract_header > csrc/contract.h` and rebuild (./setup.sh)"
    )


def test_header_carries_every_code_and_schema():
    text = contract_header.render()
    assert "enum Weighting : int64_t { kAdaptive = 0, kX = 1, kV = 2, kEps = 3 };" in text
    assert '"0 (adaptive), 1 (x), 2 (v) or 3 (eps)"' in text
    for op, schema in SCHEMAS.items():
        assert f'"{op}{schema}"' in text


def test_a_code_changed_in_python_only_is_caught(monkeypatch):
    monkeypatch.setitem(checks.WEIGHTING_CODES, "v", 3)
    monkeypatch.setitem(checks.WEIGHTING_CODES, "eps", 2)
    assert HEADER.read_text() != contract_header.render()


def test_codes_with_a_gap_are_refused(monkeypatch):
    monkeypatch.setitem(checks.WEIGHTING_CODES, "eps", 7)
    with pytest.raises(ValueError, match="without gaps"):
        contract_header.render()


@skip_no_cpp
@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_built_library_registered_the_python_schema(op):
    expected = torch._C.parse_schema(f"vgrpo::{op}{SCHEMAS[op]}")
    assert str(getattr(torch.ops.vgrpo, op).default._schema) == str(expected)


@skip_no_cpp
def test_built_library_names_the_python_codes_when_refusing_one():
    v, x, e, t = torch.zeros(1, 1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.full((1,), 0.5)
    choices = ", ".join(f"{code} ({name})" for name, code in list(WEIGHTING_CODES.items())[:-1])
    with pytest.raises(RuntimeError, match="weighting must be " + re.escape(choices)):
        torch.ops.vgrpo.elbo_fwd(v, x, e, t, None, len(WEIGHTING_CODES))


def _bare_int_weighting_comparisons(source: str) -> list[int]:
    """Lines where WEIGHTING is compared with an int literal."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = {o.id for o in operands if isinstance(o, ast.Name)}
            if "WEIGHTING" in names and any(isinstance(o, ast.Constant) and isinstance(o.value, int)
                                            for o in operands):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", sorted((ROOT / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_name_their_weighting_codes(path):
    assert _bare_int_weighting_comparisons(path.read_text()) == []


def test_bare_int_comparison_is_caught():
    assert _bare_int_weighting_comparisons("if WEIGHTING == 2:\n    pass\n") == [1]


def test_triton_constants_are_the_python_codes():
    pytest.importorskip("triton")
    from vgrpo.kernels import elbo_surrogate as kern

    for name in ("adaptive", "v", "eps"):
        assert getattr(kern, f"WEIGHTING_{name.upper()}").value == WEIGHTING_CODES[name]
