"""What a sampler needs besides the model: backend, tokenizer, prompt template, grader, settings."""

from __future__ import annotations

from dataclasses import dataclass

from .backend import GenerationBackend, SamplingParams
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

    def grade_leaves(self, leaves: list[tuple[Tree, int, str]]) -> None:
        """Grade each new leaf on its full response text (root to leaf) and update its tree."""
        pairs = [(t.problem["answer"], "".join(t.nodes[n].text for n in t.path(leaf))) for t, leaf, _ in leaves]
        for (tree, leaf, reason), ok in zip(leaves, self.grader.grade_many(pairs)):
            tree.set_reward(leaf, 1.0 if ok else 0.0, reason)
