"""Checks for the book's exercises: each tells a student whether an answer is right.

Every check computes the true answer with the library itself (``quantize``,
``zoo``), compares, prints one verdict line starting with a tick or a cross,
and returns ``True`` or ``False``.  A wrong answer never raises: in a
classroom the notebook must keep running so the student can try again; the
verdict says what was expected where that teaches something (a wrong shape, a
fraction instead of percentage points) and gives a counter-example for a
wrong function.

One module per chapter (``ch01`` ... ``ch12``) holds that chapter's checks;
``verdict`` holds what they share, and ``grading`` turns a check into an
autograder's test (:func:`require`).  Every check is re-exported here, so
``from empir_lib.book import exercises; exercises.check_quantizer(...)`` works.

Chapters call them as ``ok = check_quantizer(my_fn)``: the assignment keeps
the returned bool out of the cell's output (a trailing semicolon would too in
JupyterLab, but not under nbval, which runs cells without history and so
ignores it), and the printed verdict stays.
"""
from __future__ import annotations

from .ch01 import accuracy_gap, best_lowprecision_member, check_accuracy_gap, check_best_member
from .ch02 import (
           check_fgsm,
           check_gradient_counts,
           check_linf_norm,
           fgsm_problem,
           gradient_counts,
           linf_norms,
           norm_problem,
           reference_fgsm,
)
from .ch03 import (
           STE_POINTS,
           check_crossing,
           check_levels,
           check_quantizer,
           check_ste_gradients,
           crossing_problem,
           quantizer_inputs,
           ste_gradients,
)
from .ch04 import check_flippable_fraction, check_pareto, flippable_fraction, pareto_front
from .ch05 import (
           BROKEN_CASES,
           broken_chance,
           check_broken_chance,
           check_prob_as_logits_range,
           check_rules_disagree,
           check_vote,
           prob_as_logits_loss_range,
           reference_vote,
           rule_predictions,
           vote_cases,
)
from .ch06 import (
           BUDGET,
           check_overheads,
           check_pack,
           check_precision_budget,
           check_rate_budget,
           precision_budget,
           rate_budget,
)
from .ch07 import (
           HALFWIDTH_CASES,
           average_gain,
           binomial_halfwidth,
           check_average_gain,
           check_fixed_share,
           check_halfwidth,
           fixed_share,
           label_leak,
)
from .ch08 import (
           check_mean_prob_scores,
           check_worst_case,
           mean_prob_problem,
           objective_scores,
           worst_case_accuracy,
           worst_case_problem,
)
from .ch09 import STORAGE_CASES, check_eps_in_255ths, check_member_storage, eps_in_255ths, storage_cases
from .ch10 import (
           check_fgsm_at_loss,
           check_zero_gradient_gap,
           fgsm_at_problem,
           reference_fgsm_at_loss,
           zero_gradient_gap,
)
from .ch11 import check_crossover, check_flip_share, check_majority, crossover_cases, flip_share_cases, majority_cases
from .ch12 import check_attack
from .grading import require
from .verdict import NO, OK

__all__ = ["HALFWIDTH_CASES", "NO", "OK", "STE_POINTS", "STORAGE_CASES", "accuracy_gap", "average_gain",
           "best_lowprecision_member", "binomial_halfwidth", "check_accuracy_gap", "check_attack",
           "check_average_gain", "check_best_member", "check_crossover", "check_eps_in_255ths", "check_fgsm",
           "check_fgsm_at_loss", "check_flip_share", "check_flippable_fraction", "check_gradient_counts",
           "check_halfwidth", "check_levels", "check_linf_norm", "check_majority", "check_mean_prob_scores",
           "check_member_storage", "check_overheads", "check_pack", "check_pareto", "check_prob_as_logits_range",
           "check_quantizer", "check_rules_disagree", "check_ste_gradients", "check_vote", "check_worst_case",
           "check_zero_gradient_gap", "crossover_cases", "eps_in_255ths", "fgsm_at_problem", "flip_share_cases",
           "fgsm_problem", "flippable_fraction", "gradient_counts", "linf_norms", "majority_cases",
           "mean_prob_problem", "norm_problem", "objective_scores", "pareto_front", "prob_as_logits_loss_range",
           "quantizer_inputs", "reference_fgsm", "reference_fgsm_at_loss", "reference_vote", "require",
           "rule_predictions", "ste_gradients", "storage_cases", "vote_cases", "worst_case_accuracy",
           "worst_case_problem", "zero_gradient_gap"]
# The exercises that ask the reader to think (issue 26): chapters 3, 5 and 7.
__all__ += ["BROKEN_CASES", "broken_chance", "check_broken_chance", "check_crossing", "check_fixed_share",
            "crossing_problem", "fixed_share", "label_leak", "BUDGET", "check_precision_budget",
            "check_rate_budget", "precision_budget", "rate_budget"]
