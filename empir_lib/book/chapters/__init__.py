"""The chapters' helpers: the tables, curves and summaries the book's notebooks show.

The core library (``empir_lib.attack.attacks``, ``ensemble``, ``results``...) does the
work; these modules only arrange its output for a chapter, so that each
notebook cell reads as one visible call.  Imports run one way: a module here
may import the core, the core never imports these.

* :mod:`.committed` -- reading committed results files: what is there, what is
  missing and which command writes it, the adaptive-selection table;
* :mod:`.table2` -- Table 2, ours beside the paper's (chapters 7 to 9);
* :mod:`.landscape` -- an objective's loss and gradient along an attack path
  (chapters 5 and 8);
* :mod:`.warning_signs` -- red flags of a weak evaluation, read from the files
  (chapter 8);
* :mod:`.adaptive` -- the minimal L2 beside the suite, and the L2 answers
  (chapter 8);
* :mod:`.members` -- single members: the precision grid, transfer (chapter 4);
* :mod:`.rules` -- ensembling rules and member counts (chapter 5);
* :mod:`.four_attacks` -- the four attacks side by side (chapter 2);
* :mod:`.storage` -- measured storage and time (chapter 6);
* :mod:`.hardware` -- the deployed members against Eq. 6: equivalence, time,
  memory (chapter 6);
* :mod:`.scale` -- the ImageNet-scale comparison and its overheads (chapter 9);
* :mod:`.defences` -- Table 2's other defences beside EMPIR: the full table,
  training costs, the verdict against PGD adversarial training, gradient
  masking measured live (chapter 10).
* :mod:`.stochastic` and :mod:`.stochastic_gpu` -- the stochastic ensemble's
  expected accuracy, its convergence, the lottery, the claim; its GPU run
  (chapter 11, part 2).
"""
