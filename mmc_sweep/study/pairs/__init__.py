"""``run_study.py pairs``: the connectivity matrix (and layer-wise barriers) among many models of a study.

* ``selection``: which models ``--models`` names, with their content keys; checked before Ray starts;
* ``work``: what one Ray Tune trial does (re-make a fine-tuned model, or measure one pair and kind);
* ``driver``: the two Tune runs (models, then pairs), what is written, and how many pairs a study holds.
"""
