"""Hither functions of the pipeline integration test (importable by worker processes)."""
import os

import numpy as np

import hither as hi


@hi.function('make_block', '0.1.0')
def make_block(seed, n):
    return np.random.default_rng(seed).standard_normal(n)


@hi.function('combine', '0.1.0')
def combine(a, b):
    return (a + b) / 2


@hi.function('reduce_stats', '0.1.0')
def reduce_stats(blocks):
    stack = np.stack(blocks)
    return {'mean': float(stack.mean()), 'std': float(stack.std()), 'shape': stack.shape}


@hi.function('crash_if', '0.1.0')
def crash_if(x, crash):
    if crash:
        os._exit(9)
    return x
