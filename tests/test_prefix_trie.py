"""The vectorised prefix trie of the packed forward (ibtpo/logprobs.py: prefix_trie) against a plain
dictionary trie: the same number of nodes, and two positions share a node exactly when their rows
agree on every token up to there."""

import numpy as np
import pytest

from ibtpo.logprobs import prefix_trie


def dict_trie(seqs):
    nodes, index = {}, []
    for s in seqs:
        parent, row = -1, []
        for t in s:
            parent = nodes.setdefault((parent, t), len(nodes))
            row.append(parent)
        index.append(row)
    return len(nodes), index


@pytest.mark.parametrize("seed", range(6))
def test_same_sharing_as_a_dictionary_trie(seed):
    rng = np.random.default_rng(seed)
    stems = [list(rng.integers(0, 4, rng.integers(0, 6))) for _ in range(3)]
    seqs = [stems[i % 3] + list(rng.integers(0, 3, rng.integers(1, 7))) for i in range(11)]
    seqs.append(list(seqs[2]))  # a duplicate row
    seqs.append(seqs[4][:2] or [1])  # a prefix of another row
    tokens, ids, pos, index, rep = prefix_trie(seqs)
    n, want = dict_trie(seqs)
    assert len(ids) == len(pos) == len(rep) == n
    for i, s in enumerate(seqs):
        assert list(tokens[i, :len(s)]) == s and (tokens[i, len(s):] == -1).all()
        assert (index[i, len(s):] == -1).all()
        for j in range(len(s)):
            node = index[i, j]
            assert ids[node] == s[j] and pos[node] == j
            r, c = rep[node]
            assert c == j and index[r, c] == node  # the representative really holds the node
    for i, a in enumerate(seqs):  # shared node <=> shared prefix, as in the dictionary trie
        for k, b in enumerate(seqs):
            for j in range(min(len(a), len(b))):
                assert (index[i, j] == index[k, j]) == (want[i][j] == want[k][j])
