"""The pieces of benchmarks/bench.py.

Coordinator side (the ulmfit venv): group.py (lock-step groups of worker processes), e2e.py
(real runs of ulmfit's four commands beside fastai's own Learner: what is timed, and how),
e2e_chain.py (the order of the runs, each command starting from the one before), e2e_lm.py and
e2e_clf.py (each command's command line, ids and run-dir figures), results.py (ratios, files),
tables.py, hostinfo.py, tokenize_bench.py.

Worker side (a child process per measured configuration; ulmfit's venv or fastai's):
worker.py (the protocol and the memory probe), runners_ulmfit.py, runners_fastai.py,
runners_bare.py, e2e_fastai.py, e2e_fastai_clf.py. These import only the stdlib at module level,
so that the fastai interpreter never needs omegaconf, rich or ulmfit_cli; torch, fastai and
ulmfit_cli are imported inside the functions that use them.
"""
