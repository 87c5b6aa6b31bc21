"""Every number quoted from the paper (Sen, Ravindran and Raghunathan, ICLR 2020).

Nothing here is measured.  These are the published values, copied once so a
chapter can show them beside ours, always labelled as the paper's (README,
"Data").  Our own numbers come from the results files
(:mod:`empir_lib.studies.results`) or from a live computation.
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

# Table 2's other defences, and EMPIR built from FGSM-adversarially-trained members
# (section 5.3; accuracy in %).  The paper trains them with distillation at T = 100,
# gradient regularisation with lambda = 100 and adversarial examples at eps = 0.3.
TABLE2_DEFENCES = {
    "mnist": {
        "distillation": {"clean": 98.12, "cw": 2.34, "fgsm": 40.22, "bim": 7.61, "pgd": 3.28, "average": 13.36},
        "igr": {"clean": 99.01, "cw": 6.83, "fgsm": 30.15, "bim": 1.14, "pgd": 1.20, "average": 9.83},
        "fgsm-at": {"clean": 99.06, "cw": 3.09, "fgsm": 76.56, "bim": 0.87, "pgd": 0.39, "average": 20.23},
        "empir-fgsm-at": {"clean": 99.09, "cw": 90.54, "fgsm": 75.98, "bim": 33.16, "pgd": 5.17, "average": 51.21},
    },
    "cifar10": {
        "fgsm-at": {"clean": 72.36, "cw": 14.36, "fgsm": 41.58, "bim": 12.92, "pgd": 11.24, "average": 20.03},
        "empir-fgsm-at": {"clean": 73.62, "cw": 45.73, "fgsm": 31.67, "bim": 29.55, "pgd": 14.74, "average": 30.42},
        "pgd-at": {"clean": 73.55, "cw": 12.62, "fgsm": 12.45, "bim": 10.97, "pgd": 8.52, "average": 11.14},
    },
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

# Not the paper's: Farkya, Raghavan and Ziskind (2023), abstract: "over 50%" accuracy under PGD
# at 5/255 on CIFAR-10 for their stochastic-quantiser ensemble (a lower bound, as the abstract states it).
FARKYA_PGD_5_255 = 50.0
FARKYA_EPS = 5 / 255  # the L-inf budget of that claim
