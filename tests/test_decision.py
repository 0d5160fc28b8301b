from alime.decision import Decision, accept_chitchat, accept_generation, decide


def test_threshold_boundaries():
    assert decide(0.5, 0.5) is Decision.ANSWER_FROM_KB  # equal to T answers from the KB
    assert decide(0.5000001, 0.5) is Decision.ANSWER_FROM_KB
    assert decide(0.4999999, 0.5) is Decision.GENERATE
    assert decide(None, 0.5) is Decision.GENERATE  # no candidate at all
    assert decide(-1.0, -1.0) is Decision.ANSWER_FROM_KB


def test_generation_acceptance_boundaries():
    assert accept_generation(0.2, 0.2)
    assert not accept_generation(0.19999, 0.2)
    assert not accept_generation(None, 0.0)


def test_chitchat_acceptance_boundaries():
    assert accept_chitchat(0.8, 0.8)
    assert accept_chitchat(1.0, 0.8)
    assert not accept_chitchat(0.7999999, 0.8)
    assert not accept_chitchat(None, 0.0)
