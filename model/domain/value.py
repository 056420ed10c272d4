"""What a conversion of this customer is worth: ONE estimate for serving, training and evaluation.

A contact's expected value is (p - p_none) x the customer's order value - cost, so the order value decides when
an expensive channel pays off. Most customers have converted a few times or never: their own average is noise,
and a flat default undervalues the customers who spend most. The estimate is a credibility blend
(Buhlmann-Straub) of the customer's own average with a prior learned at training time:

    value = (revenue + k x prior) / (conversions + k)

* `prior`: the mean order value of the customer's level of one categorical profile attribute (the one that
  explains most of the differences between customers, e.g. the segment), shrunk towards the overall mean;
* `k`: the within-customer variance of order values over the variance of the customers' true means around
  their prior, so a customer whose orders vary little around a distinct mean is trusted after a few orders.

Without a prior (the fallback heuristic, a model trained before it was recorded) the estimate is the customer's
own average, else the configured default, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

MAX_CREDIBILITY = 1e6  # k when the customers' means do not differ measurably: the prior alone


class ValuePrior(BaseModel):
    """The learned prior of a customer's order value (in the manifest; `order_value` applies it)."""

    model_config = ConfigDict(extra="ignore")

    overall: float = Field(ge=0)  # mean order value of the training conversions
    attribute: str | None = None  # the categorical profile attribute whose level sets the prior
    means: dict[str, float] = Field(default_factory=dict)  # level -> prior mean (shrunk towards `overall`)
    credibility: float = Field(default=MAX_CREDIBILITY, ge=0)  # k of the blend (module docstring)
    conversions: int = 0  # the training conversions it was learned from
    customers: int = 0

    def prior(self, attributes: Mapping[str, Any] | None) -> float:
        """The prior mean order value of a customer with these profile attributes."""
        if self.attribute is None or not attributes:
            return self.overall
        level = attributes.get(self.attribute)
        return self.means.get(str(level), self.overall) if level is not None else self.overall


def order_value(
    revenue: float, conversions: int, attributes: Mapping[str, Any] | None, prior: ValuePrior | None, default: float
) -> float:
    """The customer's expected order value from their conversions so far (count, total revenue)."""
    if prior is None:
        return revenue / conversions if conversions and revenue > 0 else default
    mean = prior.prior(attributes)
    if conversions <= 0 or revenue <= 0:
        return mean
    k = prior.credibility
    return (revenue + k * mean) / (conversions + k)


def fit_prior(
    n: npt.ArrayLike,
    total: npt.ArrayLike,
    total_sq: npt.ArrayLike,
    levels: Mapping[str, Sequence[str | None]],
) -> ValuePrior | None:
    """Learn the prior from per-customer conversion statistics (count, sum and sum of squares of the values)
    and each candidate attribute's level per customer (None: unknown). None without any conversion.

    The attribute kept is the one that leaves the least variance between the customers' means around their
    level's mean (Buhlmann-Straub's between-customer variance, estimated without bias for the within-customer
    noise); no attribute when none reduces it."""
    n_ = np.asarray(n, dtype=np.float64)
    s = np.asarray(total, dtype=np.float64)
    ss = np.asarray(total_sq, dtype=np.float64)
    keep = n_ > 0
    n_, s, ss = n_[keep], s[keep], ss[keep]
    if not len(n_):
        return None
    lv = {a: np.array([str(x) if x is not None else "" for x in v], dtype=object)[keep] for a, v in levels.items()}
    big_n = float(n_.sum())
    overall = float(s.sum() / big_n)
    mean_i = s / n_
    # Within-customer variance of order values, pooled over customers with more than one conversion.
    dof = float((n_ - 1).sum())
    within = float(np.maximum(ss - n_ * mean_i**2, 0.0).sum() / dof) if dof > 0 else 0.0

    def between(centre: npt.NDArray[np.float64], groups: int) -> float:
        """Variance of the customers' true means around `centre` (Buhlmann-Straub, unbiased for the noise)."""
        spread = float((n_ * (mean_i - centre) ** 2).sum()) - (len(n_) - groups) * within
        scale = big_n - float((n_**2).sum()) / big_n
        return max(spread / scale, 0.0) if scale > 0 else 0.0

    best_attr: str | None = None
    best_var = between(np.full(len(n_), overall), 1)
    # A level's mean is shrunk towards the overall mean like a customer's: the same pseudo-count for every
    # attribute, so the comparison between attributes does not depend on the order they are tried in.
    k0 = within / best_var if best_var > 0 else MAX_CREDIBILITY
    best_means: dict[str, float] = {}
    for attr, lev in lv.items():
        known = sorted({x for x in lev if x})
        if len(known) < 2:
            continue
        raw = {x: (float(s[lev == x].sum()), float(n_[lev == x].sum())) for x in known}
        means = {x: (tot + k0 * overall) / (cnt + k0) for x, (tot, cnt) in raw.items()}
        centre = np.array([means.get(x, overall) for x in lev], dtype=np.float64)
        var = between(centre, len(known))
        if var < best_var:
            best_attr, best_var, best_means = attr, var, means
    k = min(within / best_var, MAX_CREDIBILITY) if best_var > 0 else MAX_CREDIBILITY
    return ValuePrior(
        overall=overall,
        attribute=best_attr,
        means=best_means,
        credibility=k,
        conversions=int(big_n),
        customers=len(n_),
    )
