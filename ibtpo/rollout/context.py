"""What a sampler needs besides the model: backend, tokenizer, prompt template, grader, settings."""

from __future__ import annotations

from dataclasses import dataclass

from .backend import Completion, GenerationBackend, SamplingParams
from .steps import split_steps
from .tree import Tree


@dataclass
class RolloutContext:
    backend: GenerationBackend
    tokenizer: object
    grader: object  # ibtpo.grader.Grader: grade_many([(gold, pred), ...])
    params: SamplingParams
    prompt_template: str = "{problem}\n"

    def new_tree(self, problem: dict) -> Tree:
        text = self.prompt_template.format(problem=problem["problem"])
        return Tree(problem, self.tokenizer(text, add_special_tokens=False)["input_ids"], text)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def add_steps(self, tree: Tree, parent: int, c: Completion) -> int:
        """Add a continuation of ``parent`` as a path of step nodes (split at ``"\\n\\n"``); returns the leaf."""
        pieces = [self.tokenizer.decode([t], skip_special_tokens=True) for t in c.token_ids]
        node = parent
        for a, b in split_steps(c.token_ids, pieces):
            node = tree.add_node(node, c.token_ids[a:b], c.logprobs[a:b], c.entropies[a:b], "".join(pieces[a:b]))
        return node

    def grade_leaves(self, leaves: list[tuple[Tree, int, str]]) -> None:
        """Grade each new leaf on its full response text (root to leaf) and update its tree."""
        pairs = [(t.problem["answer"], "".join(t.nodes[n].text for n in t.path(leaf))) for t, leaf, _ in leaves]
        for (tree, leaf, reason), ok in zip(leaves, self.grader.grade_many(pairs)):
            tree.set_reward(leaf, 1.0 if ok else 0.0, reason)
