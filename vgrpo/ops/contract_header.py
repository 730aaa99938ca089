"""Writes csrc/contract.h, the C++ copy of the op contract, from the Python one.

The C++ library includes the header for its weighting codes, op schemas and MAE_EPS, so those are
written in Python only (`vgrpo.ops.checks`, `vgrpo.ops.reference.MAE_EPS`). After changing one:

    python -m vgrpo.ops.contract_header > csrc/contract.h     (then rebuild: ./setup.sh)

tests/test_ops_contract.py fails while the committed header differs from `render()`.
"""

from __future__ import annotations

import json

from vgrpo.ops.checks import SCHEMAS, WEIGHTING_CODES
from vgrpo.ops.reference import MAE_EPS


def _cpp_name(name: str) -> str:
    """C++ constant name in the style of csrc/: "elbo_fwd" -> "kElboFwd", "eps" -> "kEps"."""
    return "k" + "".join(part.capitalize() for part in name.split("_"))


def _choices(codes: dict[str, int]) -> str:
    """"0 (adaptive), 1 (x), 2 (v) or 3 (eps)"."""
    items = [f"{code} ({name})" for name, code in codes.items()]
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


def render() -> str:
    """The text of csrc/contract.h."""
    codes = sorted(WEIGHTING_CODES.values())
    if codes != list(range(len(codes))):
        raise ValueError(f"weighting codes must be 0, 1, ... without gaps, got {codes}")
    enum = ", ".join(f"{_cpp_name(name)} = {code}" for name, code in WEIGHTING_CODES.items())
    schemas = "\n".join(
        f"inline constexpr const char* {_cpp_name(op)}Schema =\n    {json.dumps(op + schema)};"
        for op, schema in SCHEMAS.items()
    )
    return f"""\
// The op contract shared with Python. GENERATED from vgrpo/ops/checks.py and
// vgrpo/ops/reference.py by `python -m vgrpo.ops.contract_header > csrc/contract.h`; do not edit.
// tests/test_ops_contract.py fails when this file and the Python contract differ.
#pragma once

#include <cstdint>

namespace vgrpo::contract {{

// Weighting codes (vgrpo.ops.checks.WEIGHTING_CODES): the `int weighting` argument of the ops.
enum Weighting : int64_t {{ {enum} }};
inline constexpr int64_t kNumWeightings = {len(codes)};
inline constexpr const char* kWeightingChoices = {json.dumps(_choices(WEIGHTING_CODES))};

// Added to the stop-gradient mae before dividing (vgrpo.ops.reference.MAE_EPS).
inline constexpr double kMaeEps = {MAE_EPS!r};

// Op schemas, namespace vgrpo (vgrpo.ops.checks.SCHEMAS).
{schemas}

}}  // namespace vgrpo::contract
"""


if __name__ == "__main__":
    print(render(), end="")
