"""``run_study.py pairs``: the connectivity matrix (and layer-wise barriers) among many models of a study.

* ``selection``: which models ``--models`` names, with their content keys; checked before Ray starts;
* ``parts``: a pair's part files in the study's tables, and which are written;
* ``work``: what one Ray Tune trial does (re-make a fine-tuned model, or measure one pair and kind);
* ``driver``: the two Tune runs (models, then pairs) and what is written.
"""
