"""Imported last by the worker processes' forkserver (`lamp_core.workers._context`), after torch
and the training modules: it moves every object they created into the garbage collector's
permanent generation (`gc.freeze`).

Why: a worker forked from the forkserver shares its memory pages until it writes to one. The
collector writes to every object it examines (it updates their reference counts while it looks
for cycles), so a worker's first full collections copied pages of the imported modules that it
never uses; frozen objects are never examined. (CPython's documentation recommends exactly this
for a pre-fork server: collect, then freeze, in the parent.)
"""
import gc

gc.collect()
gc.freeze()
