"""Belief consensus between agents with compact, quantised messages (label + confidence) over a channel.

Each agent ``i`` holds a belief ``p_i`` (a probability vector over the C classes, e.g. its classifier's
softmax on its own reconstruction). In every round it broadcasts a **message** ``m_i = Q(p_i)``: its
top class and a confidence level (``levels`` buckets of the top probability on [1/C, 1]), i.e. one of
``C × levels`` symbols — ``ceil(log2(C·levels))`` bits — and its neighbours decode it through their own
channel (:class:`~diffcomm.scenarios.label_link.LabelLink`, or exactly with ``send=None``). The update
is the quantised form of average consensus (DeGroot 1974; Olfati-Saber & Murray, IEEE TAC 49(9), 2004,
eq. (4); with quantised states as in Kashyap, Başar & Srikant, Automatica 43(7), 2007)::

    p_i ← p_i + Σ_{j ∈ N(i)} W_ij (q̂_{j→i} − q_i),

where ``q_i = Q⁻¹(m_i)`` is what agent i itself sent (dequantised: the level's centre on the top class,
the rest spread evenly), ``q̂_{j→i}`` what it decoded from j (a failed decode is dropped: q̂ = q_i), and
``W`` the Metropolis–Hastings weights W_ij = 1 / (1 + max(d_i, d_j)) (Xiao & Boyd, Syst. Control Lett.
53, 2004), symmetric and doubly stochastic. **Known answers**: with exact messages (``levels=None``:
q = p) this is ``p ← W p``, which converges to the average of the initial beliefs on a connected graph at
rate ``|λ₂(W)|^r``; with noiseless quantised messages the sum Σ_i p_i is conserved exactly (W symmetric).
The decision of agent i after r rounds is argmax p_i; *agreement* is the fraction of items on which all
agents decide alike.

**Channel-use accounting**: every agent broadcasts one message per round, so a round costs
``K × uses_per_message`` channel uses (a broadcast is heard by every neighbour at once, each through its
own noise); :class:`ConsensusResult` counts every message sent.

Example:
    >>> p = torch.tensor([[[0.9, 0.1]], [[0.3, 0.7]], [[0.6, 0.4]]])     # 3 agents, 1 item, 2 classes
    >>> res = run_consensus(p, topology_adjacency("complete", 3), rounds=30)
    >>> torch.allclose(res.beliefs[-1], p.mean(0).expand(3, 1, 2).double(), atol=1e-6)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from diffcomm.errors import DiffcommError

TOPOLOGIES = ("complete", "ring", "line")


def topology_adjacency(name: str, agents: int) -> torch.Tensor:
    """Bool ``(K, K)`` adjacency (no self loops) of a named connected graph: complete, ring or line."""
    if name not in TOPOLOGIES:
        raise DiffcommError(f"unknown topology {name!r}; choose one of {', '.join(TOPOLOGIES)}")
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 2:
        raise DiffcommError(f"a topology needs at least 2 agents, got {agents!r}")
    a = torch.zeros(agents, agents, dtype=torch.bool)
    if name == "complete":
        a[:] = True
    else:
        idx = torch.arange(agents - (name == "line"))
        a[idx, (idx + 1) % agents] = True
        a = a | a.T
    a.fill_diagonal_(False)
    return a


def metropolis_weights(adjacency: torch.Tensor) -> torch.Tensor:
    """Metropolis–Hastings weights W_ij = 1/(1 + max(d_i, d_j)) on edges, float64 ``(K, K)`` (zero diagonal)."""
    a = adjacency.bool()
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not torch.equal(a, a.T):
        raise DiffcommError("adjacency must be a symmetric square bool matrix")
    deg = a.sum(1).double()
    w = 1.0 / (1.0 + torch.maximum(deg[:, None], deg[None, :]))
    return torch.where(a, w, torch.zeros_like(w)).fill_diagonal_(0.0)


def quantize_belief(p: torch.Tensor, levels: int) -> torch.Tensor:
    """Message index ``label × levels + level`` (int64) of beliefs ``(..., C)``: top class and its confidence bucket."""
    c = p.shape[-1]
    top, label = p.max(-1)
    frac = ((top - 1.0 / c) / (1.0 - 1.0 / c)).clamp(0, 1)
    level = (frac * levels).floor().clamp(max=levels - 1).long()
    return label * levels + level


def dequantize_message(m: torch.Tensor, classes: int, levels: int) -> torch.Tensor:
    """Belief ``(..., C)`` of message indices: the bucket centre on the top class, the rest evenly spread."""
    label, level = m // levels, m % levels
    top = 1.0 / classes + (level.double() + 0.5) / levels * (1.0 - 1.0 / classes)
    rest = (1.0 - top) / (classes - 1)
    out = rest[..., None].expand(*m.shape, classes).clone()
    out.scatter_(-1, label[..., None], top[..., None])
    return out


@dataclass
class ConsensusResult:
    """Beliefs after each round (``beliefs[r]``: ``(K, B, C)``, r = 0 … rounds), decisions and message counts."""

    beliefs: list[torch.Tensor]
    decisions: list[torch.Tensor]            # (K, B) per round
    messages_sent: int                       # broadcasts per item (K per round)
    failed: int = 0                          # decoded messages dropped (invalid index), summed over items
    agreement: list[float] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.beliefs) - 1


Sender = Callable[[int, torch.Tensor], torch.Tensor]


def run_consensus(beliefs: torch.Tensor, adjacency: torch.Tensor, rounds: int, levels: int | None = None,
                  send: Sender | None = None) -> ConsensusResult:
    """Run ``rounds`` rounds of quantised belief consensus (module docstring) from ``beliefs`` ``(K, B, C)``.

    ``levels``: confidence buckets per message (None: exact beliefs are exchanged, no quantisation).
    ``send(round, messages (K, B) int64) -> received (K, K, B) int64``: entry ``[i, j]`` is what agent i
    decoded from agent j's broadcast (−1 or ≥ C·levels for a failed decode); None delivers every message
    exactly. Only neighbours' entries are used.
    """
    if not torch.is_tensor(beliefs) or beliefs.ndim != 3 or not beliefs.is_floating_point():
        raise DiffcommError("run_consensus: beliefs must be a float tensor (agents, items, classes)")
    k, b, c = beliefs.shape
    if tuple(adjacency.shape) != (k, k):
        raise DiffcommError(f"run_consensus: adjacency must be ({k}, {k}) for {k} agents")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise DiffcommError(f"run_consensus: rounds must be an integer >= 0, got {rounds!r}")
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 1):
        raise DiffcommError(f"run_consensus: levels must be a positive integer or None, got {levels!r}")
    if levels is None and send is not None:
        raise DiffcommError("run_consensus: a channel (send) carries quantised messages; give levels")
    w = metropolis_weights(adjacency)
    p = beliefs.double()
    history, decisions, failed = [p.clone()], [p.argmax(-1)], 0
    for r in range(rounds):
        if levels is None:
            q_own, q_got = p, p.unsqueeze(0).expand(k, k, b, c)
        else:
            msg = quantize_belief(p, levels)                                     # (K, B)
            got = msg.unsqueeze(0).expand(k, k, b) if send is None else send(r, msg)
            if tuple(got.shape) != (k, k, b):
                raise DiffcommError(f"run_consensus: send must return ({k}, {k}, {b}) decoded messages")
            bad = (got < 0) | (got >= c * levels)
            failed += int((bad & adjacency[:, :, None]).sum())
            q_own = dequantize_message(msg, c, levels)                          # (K, B, C)
            q_got = dequantize_message(got.clamp(0, c * levels - 1), c, levels)  # (K, K, B, C): i hears j
            q_got = torch.where(bad[..., None], q_own[:, None], q_got)
        delta = (w[:, :, None, None] * (q_got - q_own[:, None])).sum(1)
        p = p + delta
        history.append(p.clone())
        decisions.append(p.argmax(-1))
    agreement = [float((d == d[:1]).all(0).double().mean()) for d in decisions]
    return ConsensusResult(beliefs=history, decisions=decisions, messages_sent=k * rounds, failed=failed,
                           agreement=agreement)


def message_bits(classes: int, levels: int) -> int:
    """Bits of one message: ``ceil(log2(classes × levels))``."""
    return max(1, math.ceil(math.log2(classes * levels)))
