"""The pieces of benchmarks/bench.py.

Coordinator side (the ulmfit venv): group.py (lock-step groups of worker processes), e2e.py
(real `ulmfit pretrain` runs beside fastai's own loop), results.py (ratios, table, files),
hostinfo.py, tokenize_bench.py.

Worker side (a child process per measured configuration; ulmfit's venv or fastai's):
worker.py (the protocol and the memory probe), runners_ulmfit.py, runners_fastai.py,
runners_bare.py, e2e_fastai.py. These import only the stdlib at module level, so that the
fastai interpreter never needs omegaconf, rich or ulmfit_cli; torch, fastai and ulmfit_cli are
imported inside the functions that use them.
"""
