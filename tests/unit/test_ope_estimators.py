"""Off-policy estimators (training/ope): hand-computed values, unbiasedness on a tiny bandit with a known value,
interval coverage, diagnostics, unknown propensities, paired differences and the lead rule."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from training import ope
from training.ope import Estimate

# --- a hand-computed example: 4 decisions ------------------------------------------------------------------
#
#   i   reward  pscore  pi_logged  w = pi/p   q_logged  q_pi   pi_embed  p_embed  w_e
#   0   1       0.5     1.0        2          0.5       1.0    1.0       0.5      2
#   1   0       0.25    0.0        0          0.5       0.5    0.5       0.5      1
#   2   2       0.5     0.5        1          1.0       1.5    0.5       1.0      0.5
#   3   1       0.2     0.4        2          1.0       0.5    1.0       0.5      2
#
# DM    = mean q_pi = (1 + 0.5 + 1.5 + 0.5) / 4 = 3.5 / 4                         = 0.875
# IPS   = mean w r = (2 + 0 + 2 + 2) / 4 = 6 / 4                                  = 1.5
# SNIPS = sum w r / sum w = 6 / 5                                                 = 1.2
# DR    = mean(q_pi + w (r - q)) = (1+2*0.5, 0.5+0, 1.5+1*1, 0.5+2*0) = (2, 0.5, 2.5, 0.5) -> 5.5 / 4 = 1.375
# SNDR  = mean q_pi + sum w (r - q) / sum w = 0.875 + (1 + 0 + 1 + 0) / 5 = 0.875 + 0.4 = 1.275
# MIPS  = mean w_e r = (2 + 0 + 1 + 2) / 4 = 5 / 4                               = 1.25
# MDR   = mean(q_pi + w_e (r - q)) = (1+1, 0.5-0.5, 1.5+0.5, 0.5+0) = (2, 0, 2, 0.5) -> 4.5 / 4 = 1.125
# ESS(w)   = (2+0+1+2)^2 / (4+0+1+4) = 25 / 9;   max 2, matched 3
# ESS(w_e) = (2+1+0.5+2)^2 / (4+1+0.25+4) = 30.25 / 9.25;   max 2, matched 4

R = [1.0, 0.0, 2.0, 1.0]
P = [0.5, 0.25, 0.5, 0.2]
PI = [1.0, 0.0, 0.5, 0.4]
QL = [0.5, 0.5, 1.0, 1.0]
QP = [1.0, 0.5, 1.5, 0.5]
PIE = [1.0, 0.5, 0.5, 1.0]
PE = [0.5, 0.5, 1.0, 0.5]


def _hand(**kw: object) -> dict[str, Estimate]:
    return ope.estimate_all(R, P, PI, QL, QP, pi_embed=PIE, p_embed=PE, n_boot=50, **kw)  # type: ignore[arg-type]


def test_each_estimator_on_the_hand_computed_example() -> None:
    est = _hand()
    expected = {"dm": 0.875, "ips": 1.5, "snips": 1.2, "dr": 1.375, "sndr": 1.275, "mips": 1.25, "mdr": 1.125}
    assert list(est) == list(ope.ESTIMATORS)
    for name, value in expected.items():
        assert est[name].value == pytest.approx(value), name
        lo, hi = est[name].ci
        assert lo <= hi, name
    # the single-estimator functions agree with estimate_all
    assert ope.dm(QP).value == pytest.approx(0.875)
    assert ope.ips(R, P, PI).value == pytest.approx(1.5)
    assert ope.snips(R, P, PI).value == pytest.approx(1.2)
    assert ope.dr(R, P, PI, QL, QP).value == pytest.approx(1.375)
    assert ope.sndr(R, P, PI, QL, QP).value == pytest.approx(1.275)
    assert ope.mips(R, PIE, PE).value == pytest.approx(1.25)
    assert ope.mdr(R, PIE, PE, QL, QP).value == pytest.approx(1.125)


def test_diagnostics_on_the_hand_computed_example() -> None:
    est = _hand()
    for name in ("ips", "snips", "dr", "sndr"):
        e = est[name]
        assert e.ess == pytest.approx(25 / 9), name
        assert (e.max_weight, e.matched, e.support, e.n) == (2.0, 3, 1.0, 4), name
    for name in ("mips", "mdr"):
        e = est[name]
        assert e.ess == pytest.approx(30.25 / 9.25), name
        assert (e.max_weight, e.matched, e.n) == (2.0, 4, 4), name
    assert (est["dm"].ess, est["dm"].max_weight, est["dm"].matched, est["dm"].n) == (4.0, 1.0, 4, 4)


def test_kish_ess() -> None:
    assert ope.kish_ess([1, 1, 1, 1]) == 4.0
    assert ope.kish_ess([5, 0, 0, 0]) == 1.0
    assert ope.kish_ess([2, 0, 1, 2]) == pytest.approx(25 / 9)
    assert ope.kish_ess([0, 0]) == 0.0
    assert ope.kish_ess([]) == 0.0


def test_clipping_caps_the_weights() -> None:
    # w clipped at 1.5: (1.5, 0, 1, 1.5); IPS = (1.5 + 0 + 2 + 1.5) / 4 = 1.25
    # DR = (1 + 1.5*0.5, 0.5, 1.5 + 1, 0.5) = (1.75, 0.5, 2.5, 0.5) -> 5.25 / 4 = 1.3125
    e = ope.ips(R, P, PI, clip=1.5)
    assert e.value == pytest.approx(1.25)
    assert e.max_weight == 1.5
    assert ope.dr(R, P, PI, QL, QP, clip=1.5).value == pytest.approx(1.3125)
    with pytest.raises(ValueError, match="clip"):
        ope.ips(R, P, PI, clip=0)


def test_ratio_form_resamples_by_hand() -> None:
    idx = np.array([[0, 0, 1, 2], [3, 3, 3, 3], [1, 1, 1, 1]])
    # SNIPS row 0: sum w r = 2+2+0+2 = 6, sum w = 2+2+0+1 = 5 -> 1.2; row 1: only decision 3 -> r = 1;
    # row 2: only decision 1, weight 0 -> undefined (NaN)
    boot = ope.snips_terms(R, P, PI).resample(idx)
    assert boot[:2] == pytest.approx([1.2, 1.0])
    assert math.isnan(boot[2])
    # SNDR row 1: mean q_pi = 0.5, plus sum w (r - q) / sum w = 0 / 8 -> 0.5
    assert ope.sndr_terms(R, P, PI, QL, QP).resample(idx)[1] == pytest.approx(0.5)
    # IPS row 0: (2 + 2 + 0 + 2) / 4 = 1.5
    assert ope.ips_terms(R, P, PI).resample(idx)[0] == pytest.approx(1.5)


def test_unknown_propensities_are_left_out_of_weighted_estimators_only() -> None:
    p = [0.5, 0.25, 0.5, math.nan]
    est = ope.estimate_all(R, p, PI, QL, QP, n_boot=50)
    assert est["dm"].value == pytest.approx(0.875)
    assert est["dm"].n == 4
    # IPS over decisions 0..2: (2 + 0 + 2) / 3; DR: (2 + 0.5 + 2.5) / 3
    assert est["ips"].value == pytest.approx(4 / 3)
    assert est["dr"].value == pytest.approx(5 / 3)
    for name in ("ips", "snips", "dr", "sndr"):
        assert (est[name].n, est[name].support, est[name].matched) == (3, 0.75, 2), name
    assert "mips" not in est  # no embedding probabilities given


def test_no_propensities_at_all_gives_nulls_and_dm_leads() -> None:
    nan = [math.nan] * 4
    est = ope.estimate_all(R, nan, PI, QL, QP, pi_embed=PIE, p_embed=nan, n_boot=50)
    assert math.isfinite(est["dm"].value)
    for name in ("ips", "snips", "dr", "sndr", "mips", "mdr"):
        e = est[name]
        assert math.isnan(e.value), name
        assert (e.n, e.matched, e.support) == (0, 0, 0.0), name
        d = e.to_dict()
        assert (d["value"], d["ci"]) == (None, [None, None])
    json.dumps({k: v.to_dict() for k, v in est.items()}, allow_nan=False)  # never NaN in a report
    assert ope.lead_estimator(est) == "dm"


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="decisions"):
        ope.ips(R, P[:3], PI)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ope.ips(R, [0.5, 0.25, 1.5, 0.2], PI)
    with pytest.raises(ValueError, match="finite"):
        ope.dr(R, P, PI, QL, [1.0, math.nan, 1.0, 1.0])
    with pytest.raises(ValueError, match="together"):
        ope.estimate_all(R, P, PI, QL, QP, pi_embed=PIE)
    with pytest.raises(ValueError, match="idx"):
        ope.ips(R, P, PI, idx=np.zeros((5, 3), dtype=np.int64))


def test_bootstrap_is_seeded_and_shared() -> None:
    a = ope.bootstrap_indices(4, 7, seed=3)
    assert a.shape == (7, 4)
    assert 0 <= a.min() <= a.max() < 4
    assert np.array_equal(a, ope.bootstrap_indices(4, 7, seed=3))
    assert _hand(seed=5)["dr"].ci == _hand(seed=5)["dr"].ci
    assert _hand(idx=a)["dr"].ci == ope.dr(R, P, PI, QL, QP, idx=a).ci


# --- a tiny bandit with a known value ----------------------------------------------------------------------
#
# 3 contexts (uniform) x 12 actions = 3 channels x 4 slots (channel = action // 4). Stochastic logging
# (softmax of fixed logits), a target that mostly plays one action per context, a reward model with a bias.

N_X, N_CH, N_SLOT = 3, 3, 4
N_A = N_CH * N_SLOT
CHANNEL = np.arange(N_A) // N_SLOT


@dataclass
class Bandit:
    mu: np.ndarray  # [x, a] expected reward
    pi0: np.ndarray  # [x, a] logging
    q_hat: np.ndarray  # [x, a] reward model (biased)

    def value(self, pi: np.ndarray) -> float:
        return float((pi * self.mu).sum(axis=1).mean())

    def log(self, n: int, seed: int, pi: np.ndarray) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, N_X, n)
        cum = self.pi0[x].cumsum(axis=1)
        a = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), N_A - 1)
        r = self.mu[x, a] + rng.normal(0.0, 1.0, n)
        same = CHANNEL[None, :] == CHANNEL[a][:, None]  # [n, a]: actions sharing the logged action's channel
        return {
            "reward": r,
            "pscore": self.pi0[x, a],
            "pi_logged": pi[x, a],
            "q_logged": self.q_hat[x, a],
            "q_pi": (pi[x] * self.q_hat[x]).sum(axis=1),
            "pi_embed": (pi[x] * same).sum(axis=1),
            "p_embed": (self.pi0[x] * same).sum(axis=1),
        }


def _bandit(slot_effect: bool = True, locally_correct_model: bool = False) -> Bandit:
    """Reward = a channel effect (+ a slot effect); the reward model has a bias, per action or (locally correct:
    right about the differences within a channel) per channel."""
    rng = np.random.default_rng(11)
    mu = rng.normal(1.0, 1.0, (N_X, N_CH))[:, CHANNEL]
    if slot_effect:
        mu = mu + rng.normal(0.0, 0.7, (N_X, N_A))
    logits = rng.normal(0.0, 0.7, (N_X, N_A))
    pi0 = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if locally_correct_model:
        q_hat = mu + rng.normal(0.3, 0.5, (N_X, N_CH))[:, CHANNEL]
    else:
        q_hat = mu + rng.normal(0.3, 0.5, (N_X, N_A))  # biased: DM is off, DR must not be
    return Bandit(mu, pi0, q_hat)


def _target(choice: np.ndarray, eps: float = 0.1) -> np.ndarray:
    pi = np.full((N_X, N_A), eps / N_A)
    pi[np.arange(N_X), choice] += 1.0 - eps
    return pi


def _mean_and_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def test_ips_and_dr_are_unbiased_and_dm_is_not_with_a_biased_reward_model() -> None:
    b = _bandit()
    pi = _target(b.mu.argmax(axis=1))
    truth = b.value(pi)
    runs: dict[str, list[float]] = {name: [] for name in ("dm", "ips", "dr", "snips", "sndr")}
    for seed in range(300):
        terms = ope.terms_all(**{k: v for k, v in b.log(200, seed, pi).items() if "embed" not in k})
        for name in runs:
            runs[name].append(terms[name].value())
    for name in ("ips", "dr"):
        mean, se = _mean_and_se(runs[name])
        assert abs(mean - truth) < 4 * se, (name, mean, truth, se)
    for name in ("snips", "sndr"):  # consistent; their small-sample bias is well below the noise here
        assert abs(_mean_and_se(runs[name])[0] - truth) < 0.05 * abs(truth) + 0.02, name
    dm_mean, dm_se = _mean_and_se(runs["dm"])
    assert abs(dm_mean - truth) > 10 * dm_se  # the reward model's bias carries straight into DM
    assert np.std(runs["dr"]) < np.std(runs["ips"])  # the reward model as control variate


def _embedding_runs(b: Bandit, pi: np.ndarray) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    runs: dict[str, list[float]] = {"ips": [], "mips": [], "mdr": []}
    ess: dict[str, list[float]] = {"ips": [], "mips": []}
    for seed in range(300):
        terms = ope.terms_all(**b.log(200, seed, pi))
        for name in runs:
            runs[name].append(terms[name].value())
        for name in ess:
            ess[name].append(ope.kish_ess(terms[name].weight))
    return runs, ess


DETERMINISTIC = np.array([1, 6, 11])  # one (channel, slot) per context


def test_mips_is_unbiased_when_the_reward_depends_on_the_embedding_only() -> None:
    b = _bandit(slot_effect=False)
    pi = _target(DETERMINISTIC, eps=0.0)
    truth = b.value(pi)
    runs, ess = _embedding_runs(b, pi)
    mean, se = _mean_and_se(runs["mips"])
    assert abs(mean - truth) < 4 * se, (mean, truth, se)
    assert np.std(runs["mips"]) < 0.7 * np.std(runs["ips"])  # marginal weights: far less variance
    assert np.mean(ess["mips"]) > 2 * np.mean(ess["ips"])


def test_mdr_is_unbiased_with_a_locally_correct_reward_model_where_mips_is_not() -> None:
    # the slot matters too (MIPS's "no direct effect" fails), but the reward model gets the differences
    # within a channel right: MDR's correction only has to fix the channel-level error
    b = _bandit(slot_effect=True, locally_correct_model=True)
    pi = _target(DETERMINISTIC, eps=0.0)
    truth = b.value(pi)
    runs, _ = _embedding_runs(b, pi)
    mean, se = _mean_and_se(runs["mdr"])
    assert abs(mean - truth) < 4 * se, (mean, truth, se)
    mips_mean, mips_se = _mean_and_se(runs["mips"])
    assert abs(mips_mean - truth) > 6 * mips_se


def test_dr_interval_covers_the_true_value() -> None:
    b = _bandit()
    pi = _target(b.mu.argmax(axis=1))
    truth = b.value(pi)
    cover = []
    for seed in range(100):
        d = b.log(400, 1000 + seed, pi)
        e = ope.dr(d["reward"], d["pscore"], d["pi_logged"], d["q_logged"], d["q_pi"], n_boot=200, seed=seed)
        cover.append(e.ci[0] <= truth <= e.ci[1])
    assert np.mean(cover) >= 0.85


def test_paired_difference_has_the_right_sign_and_is_narrower_than_unpaired() -> None:
    b = _bandit()
    best, worst = b.mu.argmax(axis=1), b.mu.argmin(axis=1)
    d_good = b.log(1000, 5, _target(best))
    pi_bad = _target(worst)
    # same logged decisions, the other policy's probabilities and model terms
    x_free = {k: v for k, v in d_good.items() if "embed" not in k}
    good = ope.terms_all(**x_free)
    bad_inputs = dict(x_free)
    logged = b.log(1000, 5, pi_bad)
    bad_inputs.update(pi_logged=logged["pi_logged"], q_pi=logged["q_pi"])
    bad = ope.terms_all(**bad_inputs)
    idx = ope.bootstrap_indices(1000, 200, seed=1)
    for name in ("dr", "ips", "snips", "sndr"):
        up = ope.paired_difference(good[name], bad[name], idx=idx)
        down = ope.paired_difference(bad[name], good[name], idx=idx)
        assert up.ci[0] > 0, name
        assert down.ci[1] < 0, name
        assert up.value == pytest.approx(-down.value)
        assert up.value == pytest.approx(good[name].value() - bad[name].value())
    same = ope.paired_difference(good["dr"], good["dr"], idx=idx)
    assert same.to_dict() == {"value": 0.0, "ci": [0.0, 0.0]}

    # two policies that differ in one context only: pairing cancels what they share
    near_choice = best.copy()
    near_choice[2] = worst[2]
    near = b.log(1000, 5, _target(near_choice))
    near_inputs = dict(x_free)
    near_inputs.update(pi_logged=near["pi_logged"], q_pi=near["q_pi"])
    near_dr = ope.terms_all(**near_inputs)["dr"]
    paired = ope.paired_difference(good["dr"], near_dr, idx=idx)
    width_a = np.subtract(*ope.estimate(good["dr"], idx=idx).ci[::-1])
    width_b = np.subtract(*ope.estimate(near_dr, idx=idx).ci[::-1])
    assert paired.ci[1] - paired.ci[0] < 0.7 * math.hypot(width_a, width_b)


# --- the lead rule -----------------------------------------------------------------------------------------


def _e(value: float = 1.0, ess: float = 500.0, matched: int = 400, n: int = 1000) -> Estimate:
    return Estimate(value, (value - 0.1, value + 0.1), ess, 3.0, matched, 1.0 if n else 0.0, n)


def test_lead_rule() -> None:
    nan = _e(math.nan, 0.0, 0, 0)
    assert ope.lead_estimator({"dm": _e(), "dr": _e(), "switch": _e(), "mdr": _e(ess=900)}) == "dr"
    # thin full-action weights: ESS below 1% of the decisions, or fewer than 30 matched -> Switch-DR
    assert ope.lead_estimator({"dm": _e(), "dr": _e(ess=5.0), "switch": _e(ess=3.0), "mdr": _e(ess=300)}) == "switch"
    thin = _e(ess=50.0, matched=12)
    assert ope.lead_estimator({"dm": _e(), "dr": thin, "switch": _e(), "mdr": _e(ess=300)}) == "switch"
    # thin but no Switch-DR: DR stays (its interval shows the noise)
    assert ope.lead_estimator({"dm": _e(), "dr": _e(ess=5.0), "mdr": _e(ess=300)}) == "dr"
    assert ope.lead_estimator({"dm": _e(), "dr": _e(ess=5.0), "switch": nan}) == "dr"
    # no propensities -> DM
    assert ope.lead_estimator({"dm": _e(), "dr": nan, "switch": nan, "mdr": nan}) == "dm"
    assert ope.lead_estimator({"dm": _e(), "dr": nan, "mdr": _e()}) == "mdr"  # only the embedding's propensity known
    assert ope.lead_estimator({"dm": _e(), "dr": _e(ess=5.0), "switch": _e()}, min_ess_share=0.001) == "dr"
    with pytest.raises(ValueError, match="no usable"):
        ope.lead_estimator({"dr": nan})


def test_a_policy_whose_weights_are_thin_leads_with_switch_dr() -> None:
    """The report leads with the model's estimator; a baseline that matches a handful of logged decisions gets
    Switch-DR for its own headline, a policy with enough matches keeps DR, and the model always the report's."""
    full = {"dm": _e(), "dr": _e(), "switch": _e(), "mdr": _e()}
    six = {"dm": _e(), "dr": _e(ess=6.0, matched=6), "switch": _e(), "mdr": _e()}
    assert ope.policy_lead("global_best", six, "dr") == "switch"
    assert ope.policy_lead("random", full, "dr") == "dr"
    assert ope.policy_lead("model", six, "dr") == "dr"
    assert ope.policy_lead("global_best", six, "switch") == "switch"
    assert ope.policy_lead("global_best", six, "mdr") == "mdr"  # estimated propensities: the rule's own choice


def test_switch_dr_drops_the_correction_of_weights_above_tau() -> None:
    # The hand example: every weight is <= 2, so with the default tau Switch-DR is DR (1.375). With tau = 1.5 the
    # decisions weighted 2 (0 and 3) keep q_pi alone: (1 + 0, 0.5 + 0, 1.5 + 1 x 1, 0.5 + 0) / 4 = 4.5 / 4.
    assert _hand()["switch"].value == pytest.approx(1.375)
    t = ope.switch_terms(R, P, PI, QL, QP, tau=1.5)
    assert t.value() == pytest.approx(1.125)
    est = ope.estimate(t, n_boot=50)
    assert (est.matched, est.max_weight) == (1, 1.0)  # diagnostics describe the weights actually used
    # one huge weight with a large residual moves DR far off; Switch-DR stays at the reward model there
    r, p, pi, ql, qp = [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.0005], [1.0, 1.0, 1.0, 1.0], [1.0] * 4, [1.0] * 4
    # q_pi + w (r - q) = 1 + 2 x (0 - 1) = -1 for the first three, 1 - 2000 for the last
    assert ope.dr(r, p, pi, ql, qp).value == pytest.approx((-1 - 1 - 1 + 1 - 2000) / 4)
    assert ope.switch_terms(r, p, pi, ql, qp).value() == pytest.approx((-1 - 1 - 1 + 1) / 4)
    with pytest.raises(ValueError, match="tau"):
        ope.switch_terms(R, P, PI, QL, QP, tau=0)


def test_mean_weight_is_the_targets_mass_the_log_can_see() -> None:
    # Hand example: mean w = (2 + 0 + 1 + 2) / 4 = 1.25, mean w_e = (2 + 1 + 0.5 + 2) / 4 = 1.375; DM: 1.
    est = ope.estimate_all(R, P, PI, QL, QP, pi_embed=PIE, p_embed=PE, n_boot=50)
    assert est["ips"].mean_weight == pytest.approx(1.25)
    assert est["dr"].mean_weight == pytest.approx(1.25)
    assert est["mdr"].mean_weight == pytest.approx(1.375)
    assert est["dm"].mean_weight == 1.0
    assert est["dr"].to_dict()["mean_weight"] == pytest.approx(1.25)
    # A target that only picks actions the log never takes: every weight 0, whatever the sample size.
    n = 200
    blind = ope.estimate_all(np.ones(n), np.full(n, 0.5), np.zeros(n), np.zeros(n), np.ones(n), n_boot=50)
    assert blind["dr"].mean_weight == 0.0
    assert blind["dr"].value == 1.0  # DR is then the reward model alone (DM), whatever the rewards say


def test_reward_model_share_is_the_mass_no_kept_weight_covers() -> None:
    # Switch-DR with tau = 1.5 on the hand example keeps the weights (0, 0, 1, 0): mean 0.25, so 75% of the
    # target's probability is valued by the reward model alone. DR's mean weight 1.25 (> 1 by noise): share 0.
    switch = ope.estimate(ope.switch_terms(R, P, PI, QL, QP, tau=1.5), n_boot=50)
    assert ope.reward_model_share("switch", switch) == pytest.approx(0.75)
    est = _hand()
    assert ope.reward_model_share("dr", est["dr"]) == 0.0
    assert ope.reward_model_share("dm", est["dm"]) == 1.0
    assert ope.reward_model_share("ips", est["ips"]) is None  # IPS does not use the reward model
    n = 200
    blind = ope.estimate_all(np.ones(n), np.full(n, 0.5), np.zeros(n), np.zeros(n), np.ones(n), n_boot=50)
    assert ope.reward_model_share("switch", blind["switch"]) == 1.0
    # in report.json's layout, the headline's share
    assert ope.policy_report("global_best", blind, "switch")["reward_model_share"] == 1.0
    assert ope.policy_report("model", est, "dr")["reward_model_share"] == 0.0


def test_the_report_says_which_policies_rest_on_the_reward_model() -> None:
    from training.report_text import lead_reason, ope_notes

    dr = {"value": 1.0, "ess": 9.0, "n": 20000, "matched": 12}
    report = {
        "ope": {"lead": "switch", "propensities": "logged"},
        "policies": {
            "model": {"lead": "switch", "estimates": {"dr": dr, "switch": {"value": 6.0}}, "reward_model_share": 0.97},
            "random": {"lead": "switch", "estimates": {"switch": {"value": 1.2}}, "reward_model_share": 0.0},
            "logging": {"lead": "switch", "estimates": {"switch": {"value": 1.3}}, "reward_model_share": None},
        },
    }
    assert lead_reason(report).startswith("Switch-DR leads: the model's full-action weights are thin (DR: ESS 9 ")
    notes = [n for n in ope_notes(report) if n.startswith("Valued mostly by the reward model")]
    assert len(notes) == 1
    assert "model 97%" in notes[0]
    assert "random" not in notes[0]
    report["policies"]["model"]["reward_model_share"] = 0.2
    assert not [n for n in ope_notes(report) if n.startswith("Valued mostly by the reward model")]
