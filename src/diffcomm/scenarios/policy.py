"""A diffusion policy for transmission decisions, trained by behaviour cloning from an oracle search.

Chi, Feng, Du, Xu, Cousineau, Burchfiel, Song, "Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion", RSS 2023: the policy is a conditional DDPM over actions, ``π(a | s)`` sampled by denoising
Gaussian noise with a network ε_θ(a_t, t, s) (their eq. (1)/(4); training is the DDPM loss
‖ε − ε_θ(√ᾱ_t a + √(1−ᾱ_t) ε, t, s)‖², Ho et al. 2020, eq. (14)). Here the action is a single decision
(no action chunk), so ε_θ is an MLP on (a_t, s, t) instead of their 1-D temporal U-Net; the schedule is
the squared-cosine one they use (Nichol & Dhariwal 2021) with ``steps`` DDPM steps.

**Actions** (:class:`ActionSet`): stay silent, or send with ``k`` channel uses from a set at a transmit
power (dB relative to the nominal) from a set. An action is embedded as a point of [−1, 1]²
(position on the ordered symbol axis, silent first; position on the power axis) and a sample is
mapped back to the **nearest grid action**, so every output lies in the action set.

**Reward and oracle.** ``reward(s, a) = accuracy(SNR_eff, k) − λ_uses · k − λ_energy · k · 10^(P/10)``
with ``SNR_eff = SNR + P + 10·log10|h|²`` (state ``s = (SNR, 10·log10|h|²)``: the average SNR and the
current block-fading gain the transmitter knows) and ``accuracy`` a table over SNR (linear
interpolation, clamped at its ends) measured for each ``k`` (silent: chance). The **oracle** is the
exhaustive search ``argmax_a reward(s, a)``; the policy is cloned from oracle actions on sampled states.

**Determinism**: :meth:`DiffusionPolicy.act` draws all its noise from the given generator, so a seed
fixes the actions.

Example:
    >>> acts = ActionSet(symbols=(1, 4), power_db=(-3.0, 0.0))
    >>> [acts.describe(i) for i in range(len(acts))]
    ['silent', 'k=1 @ -3 dB', 'k=1 @ 0 dB', 'k=4 @ -3 dB', 'k=4 @ 0 dB']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from diffcomm.errors import DiffcommError

STATE_SCALE = (20.0, 10.0)   # the state (SNR dB, fading gain dB) is divided by these before the network


@dataclass(frozen=True)
class ActionSet:
    """Silent, or ``k`` symbols from ``symbols`` at a power from ``power_db`` (index 0 = silent)."""

    symbols: tuple[int, ...]
    power_db: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.symbols or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.symbols):
            raise DiffcommError(f"policy symbols must be positive integers, got {list(self.symbols)}")
        if list(self.symbols) != sorted(set(self.symbols)):
            raise DiffcommError(f"policy symbols must be increasing and distinct, got {list(self.symbols)}")
        if not self.power_db or any(isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p)
                                    or not -30 <= p <= 10 for p in self.power_db):
            raise DiffcommError(f"policy power_db must be numbers in -30..10 dB, got {list(self.power_db)}")
        if list(self.power_db) != sorted(set(self.power_db)):
            raise DiffcommError(f"policy power_db must be increasing and distinct, got {list(self.power_db)}")

    def __len__(self) -> int:
        return 1 + len(self.symbols) * len(self.power_db)

    def action(self, index: int) -> tuple[int, float | None]:
        """``(k, power_db)``; ``(0, None)`` for silent."""
        if index == 0:
            return 0, None
        i, j = divmod(index - 1, len(self.power_db))
        return self.symbols[i], float(self.power_db[j])

    def describe(self, index: int) -> str:
        k, p = self.action(index)
        return "silent" if k == 0 else f"k={k} @ {p:g} dB"

    def uses(self) -> torch.Tensor:
        return torch.tensor([self.action(i)[0] for i in range(len(self))], dtype=torch.float64)

    def power_linear(self) -> torch.Tensor:
        return torch.tensor([0.0 if i == 0 else 10 ** (self.action(i)[1] / 10) for i in range(len(self))],
                            dtype=torch.float64)

    def grid(self) -> torch.Tensor:
        """The embedding of every action in [−1, 1]² ``(A, 2)`` (silent at symbol position −1, power 0)."""
        ns, npow = len(self.symbols) + 1, len(self.power_db)
        pos_s = torch.linspace(-1, 1, ns) if ns > 1 else torch.zeros(1)
        pos_p = torch.linspace(-1, 1, npow) if npow > 1 else torch.zeros(1)
        rows = [[-1.0, 0.0]]
        for i in range(len(self.symbols)):
            for j in range(npow):
                rows.append([float(pos_s[i + 1]), float(pos_p[j])])
        return torch.tensor(rows)

    def nearest(self, a: torch.Tensor) -> torch.Tensor:
        """Index of the grid action nearest to each embedded sample ``(B, 2)``; silent wins its symbol cell."""
        ns = len(self.symbols) + 1
        pos_s = torch.linspace(-1, 1, ns) if ns > 1 else torch.zeros(1)
        s_idx = (a[:, :1] - pos_s[None]).abs().argmin(1)
        npow = len(self.power_db)
        pos_p = torch.linspace(-1, 1, npow) if npow > 1 else torch.zeros(1)
        p_idx = (a[:, 1:2] - pos_p[None]).abs().argmin(1)
        return torch.where(s_idx == 0, torch.zeros_like(s_idx), 1 + (s_idx - 1) * npow + p_idx)


@dataclass
class AccuracyTable:
    """Measured accuracy per symbol count over an SNR grid (``acc[i, j]``: ``symbols[i]`` at ``snr_db[j]``)."""

    symbols: tuple[int, ...]
    snr_db: torch.Tensor        # (J,) increasing
    acc: torch.Tensor           # (I, J)
    chance: float

    def __call__(self, k_index: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        """Interpolated accuracy of symbol-count index ``k_index`` (B,) at SNR ``snr`` (B,), clamped at the ends."""
        grid = self.snr_db.double()
        s = snr.double().clamp(float(grid[0]), float(grid[-1]))
        j = torch.searchsorted(grid, s).clamp(1, len(grid) - 1)
        w = (s - grid[j - 1]) / (grid[j] - grid[j - 1])
        table = self.acc.double()
        return (1 - w) * table[k_index, j - 1] + w * table[k_index, j]


def reward_matrix(states: torch.Tensor, actions: ActionSet, table: AccuracyTable, lambda_uses: float,
                  lambda_energy: float = 0.0) -> torch.Tensor:
    """Expected reward of every action in every state ``(B, A)`` (module docstring); states ``(B, 2)`` in dB."""
    if tuple(table.symbols) != tuple(actions.symbols):
        raise DiffcommError(f"the accuracy table covers symbols {list(table.symbols)}, the actions "
                            f"{list(actions.symbols)}")
    b = states.shape[0]
    out = torch.empty(b, len(actions), dtype=torch.float64)
    out[:, 0] = table.chance
    for idx in range(1, len(actions)):
        k, p = actions.action(idx)
        i = actions.symbols.index(k)
        snr_eff = states[:, 0].double() + p + states[:, 1].double()
        out[:, idx] = table(torch.full((b,), i, dtype=torch.long), snr_eff)
    return out - lambda_uses * actions.uses()[None] - lambda_energy * (actions.uses() * actions.power_linear())[None]


def oracle_actions(rewards: torch.Tensor) -> torch.Tensor:
    """The exhaustive-search oracle: ``argmax_a reward`` per state (ties: the lower index, i.e. cheaper)."""
    return rewards.argmax(1)


def sample_states(n: int, snr_range: tuple[float, float], generator: torch.Generator,
                  fading: bool = True) -> torch.Tensor:
    """``(n, 2)`` states: SNR ~ U[snr_range] dB and 10·log10 ``|h|²`` with ``|h|²`` ~ Exp(1) (Rayleigh; 0 dB
    without fading)."""
    snr = snr_range[0] + (snr_range[1] - snr_range[0]) * torch.rand(n, generator=generator, dtype=torch.float64)
    if fading:
        g = -torch.log(torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-12))
        gain_db = 10 * torch.log10(g.clamp_min(1e-6))
    else:
        gain_db = torch.zeros(n, dtype=torch.float64)
    return torch.stack([snr, gain_db], 1)


def _cosine_alpha_bar(steps: int) -> torch.Tensor:
    """ᾱ_t of the squared-cosine schedule (Nichol & Dhariwal 2021, eq. (17)), t = 0 … steps."""
    s = 0.008
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (f / f[0]).clamp(1e-5, 1.0)


class DiffusionPolicy(nn.Module):
    """ε_θ(a_t, t, s): an MLP on the noisy action, the scaled state and a sinusoidal step embedding."""

    def __init__(self, actions: ActionSet, steps: int = 32, hidden: int = 128, state_dim: int = 2):
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 1000:
            raise DiffcommError(f"policy steps must be an integer in 2..1000, got {steps!r}")
        self.actions, self.steps = actions, steps
        self.register_buffer("alpha_bar", _cosine_alpha_bar(steps).float())
        self.embed_dim = 16
        self.net = nn.Sequential(nn.Linear(2 + state_dim + self.embed_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2))

    def _t_embed(self, t: torch.Tensor) -> torch.Tensor:
        half = self.embed_dim // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half) / half)
        arg = t.float()[:, None] / self.steps * 1000.0 * freqs[None] / 1000.0 * 2 * math.pi
        return torch.cat([arg.sin(), arg.cos()], 1)

    @staticmethod
    def scale_state(states: torch.Tensor) -> torch.Tensor:
        return states.float() / torch.tensor(STATE_SCALE)

    def forward(self, a_t: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a_t, self.scale_state(states), self._t_embed(t)], 1))

    def loss(self, states: torch.Tensor, action_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The DDPM ε-prediction loss on embedded actions (Ho et al. 2020, eq. (14))."""
        a0 = self.actions.grid()[action_index]
        t = torch.randint(1, self.steps + 1, (len(a0),), generator=generator)
        eps = torch.randn(a0.shape, generator=generator)
        ab = self.alpha_bar[t][:, None]
        return (self(ab.sqrt() * a0 + (1 - ab).sqrt() * eps, t, states) - eps).pow(2).mean()

    @torch.no_grad()
    def sample(self, states: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Embedded actions ``(B, 2)`` by DDPM ancestral sampling (σ_t² = β_t), clipped to [−1, 1] at each x̂0."""
        ab = self.alpha_bar.double()
        x = torch.randn(states.shape[0], 2, generator=generator, dtype=torch.float64)
        for t in range(self.steps, 0, -1):
            tt = torch.full((states.shape[0],), t, dtype=torch.long)
            eps = self(x.float(), tt, states).double()
            x0 = ((x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()).clamp(-1, 1)
            if t == 1:
                x = x0
                break
            beta = 1 - ab[t] / ab[t - 1]
            mean = (ab[t - 1].sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab[t - 1]) * x) / (1 - ab[t])
            var = beta * (1 - ab[t - 1]) / (1 - ab[t])
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        return x.float()

    def act(self, states: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Action indices ``(B,)`` (always in the set): a sample per state, mapped to the nearest grid action."""
        return self.actions.nearest(self.sample(states, generator))


def train_policy(states: torch.Tensor, action_index: torch.Tensor, actions: ActionSet, train_steps: int = 3000,
                 batch_size: int = 256, lr: float = 1e-3, seed: int = 0, steps: int = 32,
                 progress: bool = False) -> DiffusionPolicy:
    """Behaviour cloning: fit a :class:`DiffusionPolicy` to (state, oracle action) pairs (Adam, cosine LR decay)."""
    from tqdm.auto import tqdm

    if states.ndim != 2 or states.shape[1] != 2 or len(states) != len(action_index) or len(states) < 1:
        raise DiffcommError("train_policy: states must be (N, 2) with one action index each")
    torch.manual_seed(seed)
    policy = DiffusionPolicy(actions, steps=steps)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, train_steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(train_steps), disable=not progress, desc="diffusion policy (BC)", leave=False):
        idx = torch.randint(0, len(states), (min(batch_size, len(states)),), generator=gen)
        loss = policy.loss(states[idx], action_index[idx], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    policy.eval()
    return policy
