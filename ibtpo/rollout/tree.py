"""The one tree structure every sampler produces.

The root holds the prompt; every other node holds a span of generated tokens (a step, a token
span between forks, or a whole response for chains) with the behaviour policy's per-token
log-probs and entropies. A leaf ends a complete response and carries its 0/1 reward. Chains are a
tree of depth one under the root.

Node statistics live on the tree: ``n_leaves`` and ``n_correct`` of every node's subtree, so
``p_hat(s) = n_correct(s) / n_leaves(s)`` (the fraction of correct leaves below ``s``; for a
leaf its reward). Token accounting: a node's tokens are generated once, however many
trajectories pass through it, so ``generated_tokens`` counts a shared prefix once.

Forks: a sampler that continues a node which already has a continuation (IBTree / random tree
rounds 2..L, an EPTree fork) calls :meth:`Tree.record_fork` once per such pick, before the new
continuations are added, whatever their number (``B`` or ``T``). Round 1's root chains and
independent chains continue nothing and record none. A :class:`Fork` stores numbers measured at
that moment, so later surgery (EPTree splits nodes in place) does not change it.
:mod:`ibtpo.analysis.forks` turns ``tree.forks`` into statistics.

The tree owns its operations: surgery (:meth:`Tree.split_node`, EPTree's forks), traversal
(:meth:`Tree.path`, :meth:`Tree.subtree`, :meth:`Tree.leaves_under`) and the JSON format
(:meth:`Tree.to_json` / :meth:`Tree.from_json`; its rules: :mod:`ibtpo.rollout.tree_json`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .tree_json import validate_nodes


@dataclass
class TreeNode:
    id: int
    parent: int | None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    text: str = ""
    children: list[int] = field(default_factory=list)
    reward: float | None = None  # set on leaves only
    finish_reason: str | None = None  # leaves: "stop" | "length"
    n_leaves: int = 0
    n_correct: float = 0.0

    @property
    def is_leaf(self) -> bool:
        return not self.children and self.parent is not None

    @property
    def logprob_sum(self) -> float:
        return float(sum(self.logprobs))

    @property
    def logprob_mean(self) -> float:
        return self.logprob_sum / len(self.logprobs) if self.logprobs else 0.0


@dataclass(frozen=True)
class Fork:
    """One expansion from an existing node, measured when the node was picked.

    ``prefix_tokens``: generated tokens on the path to ``node`` inclusive (0 at the root), i.e. the
    tokens before the fork point; ``response_tokens``: mean generated length (root to leaf) of the
    responses then under ``node``, the responses the expansion branches from."""

    node: int
    prefix_tokens: int
    response_tokens: float


class Tree:
    """A reasoning tree for one problem."""

    def __init__(self, problem: dict, prompt_ids: list[int], prompt_text: str = ""):
        self.problem = problem
        self.prompt_ids = list(prompt_ids)
        self.nodes: list[TreeNode] = [TreeNode(id=0, parent=None, text=prompt_text)]
        self.forks: list[Fork] = []  # one per expansion from an existing node, in sampling order

    @property
    def root(self) -> TreeNode:
        return self.nodes[0]

    def add_node(self, parent: int, token_ids, logprobs, entropies, text: str = "") -> int:
        node = TreeNode(id=len(self.nodes), parent=parent, token_ids=list(token_ids),
                        logprobs=list(logprobs), entropies=list(entropies), text=text)
        self.nodes.append(node)
        self.nodes[parent].children.append(node.id)
        return node.id

    def split_node(self, node: int, j: int, decode: Callable[[list[int]], str] | None = None) -> int:
        """Split ``node`` in place at token ``j`` (``0 < j < len``): it keeps ``[:j]``, a new child gets ``[j:]``.

        The child inherits ``node``'s children (their ``parent`` is rewired), its reward and
        finish_reason when ``node`` was a leaf, and its ``n_leaves`` / ``n_correct`` (the subtree's
        leaves are unchanged, so both nodes keep the same counts). Texts: with ``decode``, the head
        gets ``decode(tokens[:j])`` and the tail the rest of the original text when the original
        starts with that head (so the concatenation is unchanged), else ``decode(tokens[j:])``.
        Returns the new child's id. The child's id is the largest in the tree (ids no longer follow
        depth); :meth:`leaves` and :meth:`path` do not depend on id order.
        """
        s = self.nodes[node]
        if s.parent is None:
            raise ValueError("cannot split the root")
        if not 0 < j < len(s.token_ids):
            raise ValueError(f"split position {j} outside (0, {len(s.token_ids)}) of node {node}")
        if decode is not None:
            head = decode(s.token_ids[:j])
            tail = s.text[len(head):] if s.text.startswith(head) else decode(s.token_ids[j:])
        else:
            head, tail = s.text, ""
        kids = list(s.children)
        c = self.add_node(node, s.token_ids[j:], s.logprobs[j:], s.entropies[j:], tail)
        child = self.nodes[c]
        child.children = kids
        for k in kids:
            self.nodes[k].parent = c
        child.n_leaves, child.n_correct = s.n_leaves, s.n_correct
        child.reward, child.finish_reason = s.reward, s.finish_reason
        s.reward, s.finish_reason = None, None
        s.children = [c]
        s.token_ids, s.logprobs, s.entropies, s.text = s.token_ids[:j], s.logprobs[:j], s.entropies[:j], head
        return c

    def record_fork(self, node: int) -> Fork:
        """Record that new continuations of ``node``'s prefix are about to be sampled (see the
        module docstring); call it before adding them."""
        prefix = sum(len(self.nodes[n].token_ids) for n in self.path(node))
        lengths, stack = [], [(node, prefix)]
        while stack:  # the generated length of every leaf under node
            n, used = stack.pop()
            kids = self.nodes[n].children
            if not kids and n != 0:
                lengths.append(used)
            stack.extend((c, used + len(self.nodes[c].token_ids)) for c in kids)
        fork = Fork(node, prefix, sum(lengths) / len(lengths) if lengths else float(prefix))
        self.forks.append(fork)
        return fork

    def set_reward(self, leaf: int, reward: float, finish_reason: str | None = None) -> None:
        """Grade a leaf and update the leaf and correct counts of all its ancestors."""
        node = self.nodes[leaf]
        if node.children:
            raise ValueError(f"node {leaf} has children; only leaves carry rewards")
        if node.reward is not None:
            raise ValueError(f"leaf {leaf} is already graded")
        node.reward = float(reward)
        node.finish_reason = finish_reason
        cur: int | None = leaf
        while cur is not None:
            self.nodes[cur].n_leaves += 1
            self.nodes[cur].n_correct += node.reward
            cur = self.nodes[cur].parent

    def p_hat(self, node: int) -> float:
        """Fraction of correct leaves under ``node`` (0/0 := 0)."""
        n = self.nodes[node]
        return n.n_correct / n.n_leaves if n.n_leaves else 0.0

    def leaves(self) -> list[int]:
        return [n.id for n in self.nodes if n.is_leaf]

    def path(self, node: int) -> list[int]:
        """Node ids from the root's child down to ``node`` (the root excluded)."""
        out = []
        while node != 0:
            out.append(node)
            node = self.nodes[node].parent
        return out[::-1]

    def subtree(self, node: int) -> list[int]:
        """``node`` and all its descendants (ids ascending)."""
        out, stack = [], [node]
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(self.nodes[n].children)
        return sorted(out)

    def leaves_under(self) -> dict[int, list[int]]:
        """Per node, the leaf ids of its subtree (post-order accumulation)."""
        under: dict[int, list[int]] = {}

        def visit(n: int) -> list[int]:
            node = self.nodes[n]
            out = [n] if node.is_leaf else []
            for c in node.children:
                out.extend(visit(c))
            under[n] = out
            return out

        visit(0)
        return under

    def prefix_ids(self, node: int) -> list[int]:
        """Prompt tokens followed by every token on the path to ``node`` (inclusive)."""
        ids = list(self.prompt_ids)
        for n in self.path(node):
            ids.extend(self.nodes[n].token_ids)
        return ids

    def rewards(self) -> list[float]:
        return [self.nodes[i].reward for i in self.leaves()]

    @property
    def generated_tokens(self) -> int:
        return sum(len(n.token_ids) for n in self.nodes[1:])

    def to_json(self) -> dict:
        """The score-tree JSON format: a list of nodes with id, parent, text, logprob_mean, reward
        (read back by :meth:`from_json`)."""
        return {
            "problem": {k: self.problem.get(k) for k in ("id", "problem", "answer")},
            "nodes": [
                {"id": n.id, "parent": n.parent, "text": n.text, "n_tokens": len(n.token_ids),
                 "logprob_mean": n.logprob_mean if n.parent is not None else None,
                 **({"reward": n.reward} if n.reward is not None else {})}
                for n in self.nodes
            ],
        }

    @classmethod
    def from_json(cls, data, origin: str = "<tree>") -> tuple[Tree, list]:
        """Build a tree from the JSON format (rules: :func:`~ibtpo.rollout.tree_json.validate_nodes`,
        which raises a :class:`~ibtpo.rollout.tree_json.TreeFormatError` naming ``origin``); returns it
        and the user ids in node order. Each node gets one token whose log-prob is its ``logprob_mean``
        (or ``log(prob)``, default ``prob`` 1), nodes are added breadth-first, leaves get their reward."""
        nodes, r, children = validate_nodes(data, origin)
        problem = (data.get("problem") or {}) if isinstance(data, dict) else {}
        text = nodes[r].get("text") or ""
        tree = cls({"id": problem.get("id", "tree"), "problem": problem.get("problem", text),
                    "answer": problem.get("answer", "")}, [], text)
        ids, internal = [nodes[r]["id"]], {nodes[r]["id"]: 0}
        queue = [nodes[r]]
        while queue:
            parent = queue.pop(0)
            for n in (nodes[i] for i in children.get(parent["id"], [])):
                lp = float(n["logprob_mean"]) if "logprob_mean" in n else math.log(n.get("prob", 1.0))
                internal[n["id"]] = tree.add_node(internal[parent["id"]], [0], [lp], [0.0], n.get("text", ""))
                ids.append(n["id"])
                queue.append(n)
        for n in nodes:
            if not children.get(n["id"]):  # a leaf (the root has children)
                tree.set_reward(internal[n["id"]], float(n["reward"]))
        return tree, ids
