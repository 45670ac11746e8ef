"""Survival statistics that agree with R's ``survival`` package (see docs/reports.md).

A pure layer: each function takes a DataFrame and column names and returns a frozen result
object; nothing here touches a database, prints or draws."""

from registry.statistics.cox import CoxResult, cox_ph, cox_zph
from registry.statistics.logrank import LogRankResult, logrank_test
from registry.statistics.survival import KaplanMeier, kaplan_meier, reverse_km_median_follow_up

__all__ = [
    "CoxResult",
    "KaplanMeier",
    "LogRankResult",
    "cox_ph",
    "cox_zph",
    "kaplan_meier",
    "logrank_test",
    "reverse_km_median_follow_up",
]
