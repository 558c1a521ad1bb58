"""House rule (issue 23): no function over 60 lines in ``ibtpo/rollout`` (the decode loop and samplers
read top to bottom). Counted from the ``def`` line to the last line of the body, docstring included."""

import ast
from pathlib import Path

LIMIT = 60
ROOT = Path(__file__).resolve().parents[1] / "ibtpo" / "rollout"


def long_functions(root: Path, limit: int) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(root.parents[1])}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_rollout_function_over_sixty_lines():
    assert long_functions(ROOT, LIMIT) == []


def test_the_count_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert [s.split()[1] for s in long_functions(tmp_path, LIMIT)] == ["long"]
