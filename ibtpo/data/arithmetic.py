"""Synthetic multi-step arithmetic with step-separated worked solutions.

A problem is a random binary expression tree with ``n_ops`` internal nodes (operators ``+ - *``,
``*`` drawn with probability ``p_mul``) over integer operands in ``[operand_min, operand_max]``.
Rejection sampling keeps every intermediate value in ``[0, value_max]``. The expression is
printed with minimal, unambiguous parentheses.

The worked solution lists one step per operator, ``a op b=c``, joined by a blank line
(``"\\n\\n"``, the paper's step separator), in a **random topological order** (a step can only use
values already computed), and ends with ``The answer is \\boxed{N}``. Independent
sub-expressions can therefore appear in either order: problems with several valid step orders
give the tree samplers real step-level diversity.

Everything is deterministic given the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

STEP_SEPARATOR = "\n\n"
_PREC = {"+": 1, "-": 1, "*": 2}


@dataclass(eq=False)  # identity, not value, equality: equal sub-expressions are distinct steps
class Node:
    op: str | None = None  # None for a leaf
    value: int = 0
    left: "Node | None" = None
    right: "Node | None" = None


@dataclass(frozen=True)
class ArithmeticSpec:
    """Difficulty of one split: number of operators and operand/value ranges."""

    n_ops: tuple[int, ...] = (2, 3, 4)
    operand_min: int = 1
    operand_max: int = 20
    value_max: int = 200
    p_mul: float = 0.2


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _random_tree(rng: random.Random, n_ops: int, spec: ArithmeticSpec) -> Node:
    """Random binary tree with ``n_ops`` internal nodes; values checked bottom-up."""
    if n_ops == 0:
        return Node(value=rng.randint(spec.operand_min, spec.operand_max))
    left_ops = rng.randint(0, n_ops - 1)
    left = _random_tree(rng, left_ops, spec)
    right = _random_tree(rng, n_ops - 1 - left_ops, spec)
    op = "*" if rng.random() < spec.p_mul else rng.choice("+-")
    return Node(op=op, value=_apply(op, left.value, right.value), left=left, right=right)


def _in_range(node: Node, spec: ArithmeticSpec) -> bool:
    if node.op is None:
        return True
    return 0 <= node.value <= spec.value_max and _in_range(node.left, spec) and _in_range(node.right, spec)


def render(node: Node) -> str:
    """Expression text with minimal parentheses (left-associative ``+ -`` and ``*``)."""
    if node.op is None:
        return str(node.value)
    left, right = render(node.left), render(node.right)
    if node.left.op is not None and _PREC[node.left.op] < _PREC[node.op]:
        left = f"({left})"
    if node.right.op is not None and (
        _PREC[node.right.op] < _PREC[node.op]
        or (_PREC[node.right.op] == _PREC[node.op] and node.op in "-*" and node.right.op != "*")
        or (node.op == "-" and _PREC[node.right.op] == _PREC[node.op])
    ):
        right = f"({right})"
    return f"{left}{node.op}{right}"


def _internal_nodes(node: Node) -> list[Node]:
    if node.op is None:
        return []
    return _internal_nodes(node.left) + _internal_nodes(node.right) + [node]


def solution_steps(root: Node, rng: random.Random) -> list[str]:
    """Steps ``a op b=c`` in a random topological order of the operator nodes."""
    pending = _internal_nodes(root)
    done: set[int] = set()
    steps = []
    while pending:
        ready = [n for n in pending if all(c.op is None or id(c) in done for c in (n.left, n.right))]
        node = rng.choice(ready)
        pending.remove(node)
        done.add(id(node))
        steps.append(f"{node.left.value}{node.op}{node.right.value}={node.value}")
    return steps


def n_valid_orders(root: Node) -> int:
    """Number of topological orders of the operator nodes (linear extensions of the tree)."""
    from math import comb

    def walk(node: Node) -> tuple[int, int]:  # (size, orders)
        if node.op is None:
            return 0, 1
        ls, lo = walk(node.left)
        rs, ro = walk(node.right)
        return ls + rs + 1, lo * ro * comb(ls + rs, ls)

    return walk(root)[1]


def make_problem(rng: random.Random, n_ops: int, spec: ArithmeticSpec, max_tries: int = 10_000) -> dict:
    for _ in range(max_tries):
        root = _random_tree(rng, n_ops, spec)
        if _in_range(root, spec):
            break
    else:  # pragma: no cover - only with absurd specs
        raise ValueError(f"no expression with {n_ops} ops fits value_max={spec.value_max}")
    expr = render(root)
    steps = solution_steps(root, rng)
    solution = STEP_SEPARATOR.join(steps + [f"The answer is \\boxed{{{root.value}}}"])
    return {
        "problem": f"Compute {expr}.",
        "expression": expr,
        "answer": str(root.value),
        "solution": solution,
        "n_ops": n_ops,
        "n_orders": n_valid_orders(root),
    }


def generate(spec: ArithmeticSpec, n: int, seed: int, exclude: set[str] = frozenset(),
             prefix: str = "arith") -> list[dict]:
    """``n`` distinct problems (by expression), none in ``exclude``; n_ops cycles through ``spec.n_ops``."""
    rng = random.Random(seed)
    out, seen = [], set(exclude)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:
            raise ValueError(f"could only make {len(out)} distinct problems of {n} for {spec}")
        n_ops = spec.n_ops[len(out) % len(spec.n_ops)]
        p = make_problem(rng, n_ops, spec)
        if p["expression"] in seen:
            continue
        seen.add(p["expression"])
        out.append({"id": f"{prefix}-{len(out):05d}", **p})
    return out
