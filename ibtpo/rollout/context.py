"""What a sampler needs besides the model: backend, tokenizer, prompt template, grader, settings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .backend import Completion, GenerationBackend, SamplingParams
from .steps import split_steps
from .tree import Tree


@dataclass
class RolloutContext:
    backend: GenerationBackend
    tokenizer: object
    grader: object  # ibtpo.grading.Grader: grade_many([(gold, pred), ...])
    params: SamplingParams
    prompt_template: str = "{problem}\n"
    # defer_grading: grade_leaves hands the pairs to a background thread and returns at once; the
    # rewards are set by settle() (the trainer computes the reference log-probs meanwhile; a sampler
    # that reads rewards between rounds settles first). Off: graded before grade_leaves returns.
    defer_grading: bool = False
    _pending: list = field(default_factory=list, init=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def new_tree(self, problem: dict) -> Tree:
        text = self.prompt_template.format(problem=problem["problem"])
        return Tree(problem, self.tokenizer(text, add_special_tokens=False)["input_ids"], text)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def add_span(self, tree: Tree, parent: int, c: Completion) -> int:
        """Add a continuation of ``parent`` as one node with its decoded text; returns it (the leaf)."""
        return tree.add_node(parent, c.token_ids, c.logprobs, c.entropies, self.decode(c.token_ids))

    def add_steps(self, tree: Tree, parent: int, c: Completion) -> int:
        """Add a continuation of ``parent`` as a path of step nodes (split at ``"\\n\\n"``); returns the leaf."""
        pieces = [self.tokenizer.decode([t], skip_special_tokens=True) for t in c.token_ids]
        node = parent
        for a, b in split_steps(c.token_ids, pieces):
            node = tree.add_node(node, c.token_ids[a:b], c.logprobs[a:b], c.entropies[a:b], "".join(pieces[a:b]))
        return node

    def expand(self, picks: list[tuple[Tree, int]], n: int, seed: int, as_steps: bool = True) -> list[tuple[Tree, int]]:
        """Sample ``n`` continuations of each picked ``(tree, node)``'s prefix, add and grade them.

        The one node expansion of every sampler (chains: the roots of fresh trees; IBTree / random
        tree: round 1's roots and the picked nodes; EPTree: its initial chains and forks). In order:
        a pick whose node already has a continuation is recorded as a fork (:meth:`Tree.record_fork`,
        once per pick, before its continuations); ONE backend call for all picks, ``seed`` as given,
        each prefix capped at ``max_new_tokens`` minus the tokens already on its path (so no response
        is longer than a chain's); each continuation added as a path of step nodes (:meth:`add_steps`)
        or, ``as_steps=False``, as one node (:meth:`add_span`); the new leaves graded
        (:meth:`grade_leaves`). Returns the new ``(tree, leaf)`` pairs in pick order, then sample order;
        no picks: no call, ``[]``."""
        if not picks:
            return []
        for t, node in picks:  # a fork: a node that already has a continuation (not a root's first call)
            if t.nodes[node].children:
                t.record_fork(node)
        prefixes = [t.prefix_ids(node) for t, node in picks]
        used = [len(p) - len(t.prompt_ids) for p, (t, _) in zip(prefixes, picks)]
        outs = self.backend.generate(prefixes, n, self.params, seed=seed,
                                     max_new=[self.params.max_new_tokens - u for u in used])
        add = self.add_steps if as_steps else self.add_span
        new = [(t, add(t, node, c), c.finish_reason) for (t, node), cs in zip(picks, outs) for c in cs]
        self.grade_leaves(new)
        return [(t, leaf) for t, leaf, _ in new]

    def grade_leaves(self, leaves: list[tuple[Tree, int, str]]) -> None:
        """Grade each new leaf on its full response text (root to leaf) and update its tree (with
        ``defer_grading``: in the background, applied by :meth:`settle`)."""
        pairs = [(t.problem["answer"], "".join(t.nodes[n].text for n in t.path(leaf))) for t, leaf, _ in leaves]
        if not self.defer_grading:
            self._apply(leaves, self.grader.grade_many(pairs))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grade")
        self._pending.append((leaves, self._pool.submit(self.grader.grade_many, pairs)))

    def settle(self) -> None:
        """Wait for the deferred grades and set them on their trees, in submission order (no-op when
        none are pending)."""
        pending, self._pending = self._pending, []
        for leaves, fut in pending:
            self._apply(leaves, fut.result())

    @staticmethod
    def _apply(leaves: list[tuple[Tree, int, str]], oks) -> None:
        for (tree, leaf, reason), ok in zip(leaves, oks):
            tree.set_reward(leaf, 1.0 if ok else 0.0, reason)
