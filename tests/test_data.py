import random

from ibtpo.data.arithmetic import ArithmeticSpec, Node, generate, n_valid_orders, render, solution_steps
from ibtpo.data.problems import DataError, load_problems, write_jsonl

import pytest


def test_generator_is_deterministic_and_distinct():
    a = generate(ArithmeticSpec(), 200, seed=3)
    b = generate(ArithmeticSpec(), 200, seed=3)
    c = generate(ArithmeticSpec(), 200, seed=4)
    assert a == b
    assert a != c
    assert len({p["expression"] for p in a}) == 200


def test_expression_value_and_steps_are_consistent():
    spec = ArithmeticSpec(n_ops=(2, 3, 4, 5), value_max=200)
    for p in generate(spec, 500, seed=1):
        assert eval(p["expression"]) == int(p["answer"])  # independent check of rendering
        steps = p["solution"].split("\n\n")
        assert steps[-1] == f"The answer is \\boxed{{{p['answer']}}}"
        assert len(steps) == p["n_ops"] + 1
        for s in steps[:-1]:
            lhs, rhs = s.split("=")
            assert eval(lhs) == int(rhs) and 0 <= int(rhs) <= 200


def test_difficulty_parameters_are_respected():
    spec = ArithmeticSpec(n_ops=(3,), operand_min=21, operand_max=60, value_max=400)
    for p in generate(spec, 100, seed=0):
        nums = [int(x) for x in p["expression"].replace("(", " ").replace(")", " ").replace("+", " ")
                .replace("-", " ").replace("*", " ").split()]
        assert len(nums) == 4 and all(21 <= x <= 60 for x in nums)


def test_several_problems_admit_more_than_one_step_order():
    probs = generate(ArithmeticSpec(), 300, seed=0)
    assert sum(p["n_orders"] > 1 for p in probs) > 60
    # (1+2)*(3+4): the two sums are independent -> 2 orders; seen in the sampled solutions
    tree = Node("*", 21, Node("+", 3, Node(value=1), Node(value=2)), Node("+", 7, Node(value=3), Node(value=4)))
    assert render(tree) == "(1+2)*(3+4)"
    assert n_valid_orders(tree) == 2
    firsts = {solution_steps(tree, random.Random(s))[0] for s in range(20)}
    assert firsts == {"1+2=3", "3+4=7"}


def test_exclusion_keeps_held_out_prompts_out():
    test = generate(ArithmeticSpec(), 100, seed=5)
    train = generate(ArithmeticSpec(), 2000, seed=6, exclude={p["expression"] for p in test})
    assert not {p["expression"] for p in test} & {p["expression"] for p in train}


def test_every_gold_solution_grades_correct():
    from ibtpo.grading import Grader

    probs = generate(ArithmeticSpec(n_ops=(2, 3, 4, 5)), 60, seed=9) + generate(
        ArithmeticSpec(n_ops=(2, 3), operand_min=21, operand_max=60, value_max=400), 20, seed=9)
    with Grader(fast_integer_path=False) as g:  # the real math-verify path
        assert all(g.grade_many([(p["answer"], p["solution"]) for p in probs]))
        wrong = [(str(int(p["answer"]) + 1), p["solution"]) for p in probs[:10]]
        assert not any(g.grade_many(wrong))


def test_load_problems_errors_name_file_and_row(tmp_path):
    f = tmp_path / "p.jsonl"
    write_jsonl(f, [{"id": "a", "problem": "x", "answer": "1"}, {"id": "b", "problem": "y"}])
    with pytest.raises(DataError, match=r"p.jsonl: row 2: missing field 'answer'"):
        load_problems(f)
    write_jsonl(f, [{"id": "a", "problem": "x", "answer": "1"}, {"id": "a", "problem": "y", "answer": 2}])
    with pytest.raises(DataError, match=r"row 2: duplicated id 'a'"):
        load_problems(f)
    f.write_bytes(b'{"id": "a", "problem": "x", "answer": "1"}\n{"problem": "\xff"}\n')
    with pytest.raises(DataError, match=r"row 2: not valid UTF-8"):
        load_problems(f)
    f.write_text("")
    with pytest.raises(DataError, match="no rows"):
        load_problems(f)
    write_jsonl(f, [{"id": 1, "problem": "x", "answer": 27.0}])
    assert load_problems(f)[0]["answer"] == "27"
