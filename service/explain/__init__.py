"""Explanations: why a served model gave its answer (Grad-CAM and integrated gradients, through Captum).

`core` (methods, targets per task, results), `gradients` (the model copy, integrated gradients with a
completeness check), one explainer per kind (`images`, `rows`, `texts`), and `pool` (the table of kinds
that explain, and the threads they run on, apart from the prediction batchers).
"""
