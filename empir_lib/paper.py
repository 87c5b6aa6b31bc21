"""Every number quoted from the paper (Sen, Ravindran and Raghunathan, ICLR 2020).

Nothing here is measured.  These are the published values, copied once so a
chapter can show them beside ours, always labelled as the paper's (DESIGN.md,
"The data flow").  Our own numbers come from the results files
(:mod:`empir_lib.results`) or from a live computation.
"""
from __future__ import annotations

from .errors import FULL_PRECISION

# Table 2 (accuracy in %; "average" is the mean of the four attacks).
TABLE2 = {
    "mnist": {"baseline": {"clean": 98.87, "cw": 3.69, "fgsm": 14.32, "bim": 0.90, "pgd": 0.77, "average": 4.92},
              "empir": {"clean": 98.89, "cw": 86.73, "fgsm": 67.06, "bim": 18.61, "pgd": 17.51, "average": 47.48}},
    "cifar10": {"baseline": {"clean": 74.54, "cw": 13.38, "fgsm": 10.28, "bim": 11.97, "pgd": 10.69,
                             "average": 11.58},
                "empir": {"clean": 72.56, "cw": 48.51, "fgsm": 20.45, "bim": 24.59, "pgd": 13.55,
                          "average": 26.78}},
    "imagenet": {"baseline": {"clean": 53.23, "cw": 9.94, "fgsm": 10.29, "bim": 10.81, "pgd": 10.30,
                              "average": 10.34},
                 "empir": {"clean": 55.09, "cw": 29.36, "fgsm": 21.65, "bim": 20.67, "pgd": 11.76,
                           "average": 20.86}},
}

# Figure 4 (c, d), quoted in section 5.4 as multiples of one FP model.  The precisions
# of the three LP members are not given.
FIGURE4 = {"3 LP members": {"m": 0, "n": 3, "time": 0.38, "storage": 0.25},
           "3 FP members": {"m": 3, "n": 0, "time": 3.0, "storage": 3.0}}

# Section 5.1: AlexNet's EMPIR members as (wbits, abits): {2,2}, {4,4} and one FP member.
ALEXNET_EMPIR = [(2, 2), (4, 4), (FULL_PRECISION, FULL_PRECISION)]

# Section 3.3: the fixed-width datapaths the paper names (4, 8 and 16 bits besides 32).
NATIVE_WIDTHS = (4, 8, 16, FULL_PRECISION)

# Not the paper's: Tramer et al. (2020), "On adaptive attacks to adversarial example
# defenses", section on EMPIR: CIFAR-10 EMPIR accuracy (%) under PGD at eps = 8/255
# (100 steps on the mean probability), as quoted in issue reports and chapter 8.
TRAMER_CIFAR10_EPS8 = 1.5
