"""The run-time type checker the test suite applies to every `congeal` function (pytest.ini: --jaxtyping-packages).

beartype with PEP 484's numeric tower, so an `int` passes where a `float` is annotated, as type checkers allow.
"""
from beartype import BeartypeConf, beartype

typechecker = beartype(conf=BeartypeConf(is_pep484_tower=True))
