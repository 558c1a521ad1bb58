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
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        """The score-tree JSON format: a list of nodes with id, parent, text, logprob_mean, reward."""
        return {
            "problem": {k: self.problem.get(k) for k in ("id", "problem", "answer")},
            "nodes": [
                {"id": n.id, "parent": n.parent, "text": n.text, "n_tokens": len(n.token_ids),
                 "logprob_mean": n.logprob_mean if n.parent is not None else None,
                 **({"reward": n.reward} if n.reward is not None else {})}
                for n in self.nodes
            ],
        }
