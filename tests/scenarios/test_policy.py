"""The diffusion policy: actions stay in their sets, sampling is deterministic for a seed, and on a toy whose
oracle is known in closed form the behaviour-cloned policy recovers it."""

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.scenarios.policy import (
    AccuracyTable,
    ActionSet,
    oracle_actions,
    reward_matrix,
    sample_states,
    train_policy,
)

ACTS = ActionSet(symbols=(1, 4, 16), power_db=(-3.0, 0.0))


def toy_table() -> AccuracyTable:
    """Accuracy 0.1 + 0.9·sigmoid((SNR − θ_k)/2) with thresholds 10, 3, −3 dB for k = 1, 4, 16."""
    snr = torch.linspace(-20, 40, 61)
    acc = torch.stack([0.1 + 0.9 * torch.sigmoid((snr - th) / 2) for th in (10.0, 3.0, -3.0)])
    return AccuracyTable((1, 4, 16), snr, acc, 0.1)


def test_action_set_grid_round_trip_and_errors():
    grid = ACTS.grid()
    assert torch.equal(ACTS.nearest(grid), torch.arange(len(ACTS)))
    assert ACTS.action(0) == (0, None) and ACTS.action(len(ACTS) - 1) == (16, 0.0)
    far = torch.tensor([[5.0, -5.0], [-0.9, 3.0], [0.0, 0.0]])
    assert all(0 <= int(i) < len(ACTS) for i in ACTS.nearest(far))
    with pytest.raises(DiffcommError, match="positive integers"):
        ActionSet(symbols=(0, 2), power_db=(0.0,))
    with pytest.raises(DiffcommError, match="increasing"):
        ActionSet(symbols=(4, 2), power_db=(0.0,))
    with pytest.raises(DiffcommError, match="power_db"):
        ActionSet(symbols=(2,), power_db=(50.0,))


def test_reward_matrix_matches_the_formula_and_the_oracle_is_its_argmax():
    table = toy_table()
    states = torch.tensor([[10.0, 0.0], [0.0, -3.0]], dtype=torch.float64)
    r = reward_matrix(states, ACTS, table, lambda_uses=0.01, lambda_energy=0.005)
    k, p = ACTS.action(3)                                     # k = 4 @ -3 dB
    snr_eff = 10.0 + p + 0.0
    want = 0.1 + 0.9 * torch.sigmoid(torch.tensor((snr_eff - 3.0) / 2)) - 0.01 * k - 0.005 * k * 10 ** (p / 10)
    assert float(r[0, 3]) == pytest.approx(float(want), abs=2e-3)   # linear interpolation on a 1 dB grid
    assert float(r[0, 0]) == pytest.approx(0.1)
    assert torch.equal(oracle_actions(r), r.argmax(1))


def test_cloned_policy_recovers_the_known_oracle_and_is_deterministic():
    table = toy_table()
    states = sample_states(4096, (-5.0, 20.0), torch.Generator().manual_seed(0))
    oracle = oracle_actions(reward_matrix(states, ACTS, table, 0.01))
    policy = train_policy(states, oracle, ACTS, train_steps=2000, seed=0)
    test = sample_states(2000, (-5.0, 20.0), torch.Generator().manual_seed(1))
    rewards = reward_matrix(test, ACTS, table, 0.01)
    a = policy.act(test, torch.Generator().manual_seed(2))
    assert ((a >= 0) & (a < len(ACTS))).all()
    assert torch.equal(a, policy.act(test, torch.Generator().manual_seed(2)))
    match = float((a == oracle_actions(rewards)).double().mean())
    regret = float((rewards.max(1).values - rewards.gather(1, a[:, None])[:, 0]).mean())
    best_fixed = float(rewards.mean(0).max())
    # measured 0.85 match and 0.008 mean regret; the best fixed action loses 0.06 to the oracle
    assert match > 0.75 and regret < 0.02
    assert float(rewards.max(1).values.mean()) - best_fixed > 3 * regret


def test_train_policy_rejects_bad_shapes():
    with pytest.raises(DiffcommError, match="states must be"):
        train_policy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), ACTS, train_steps=1)
