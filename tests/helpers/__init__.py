"""Test scaffolding shared by the suite (importable as `helpers`; pytest.ini puts tests/ on the path)."""
from . import typecheck  # noqa: F401  (pytest.ini names helpers.typecheck.typechecker; the hook reads it as an attribute)
