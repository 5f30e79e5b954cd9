"""Hither functions for the transport tests (a module of their own: the runner imports it
from the code bundle)."""
import numpy as np

import hither as hi


@hi.function('describe_inputs', '0.1.0')
def describe_inputs(big, small, pair, text_file):
    with open(text_file) as f:
        text = f.read()
    print("got", big.shape, small.shape)
    return {'big_doubled': big * 2, 'small_sum': float(small.sum()), 'pair': pair,
            'text': text.upper()}


@hi.function('write_report', '0.1.0')
def write_report(text, out_name):
    with open(out_name, 'w') as f:
        f.write(text)
    return hi.File(out_name)


@hi.function('make_ones', '0.1.0')
def make_ones(n):
    return np.ones(n)


@hi.function('add_to', '0.1.0')
def add_to(x, y):
    return x + y


@hi.function('echo_value', '0.1.0')
def echo_value(x):
    return x


@hi.function('scribble_on_input', '0.1.0')
def scribble_on_input(text_file, arr_path_holder=None):
    # a misbehaving job: it writes into its input file in place (not through a copy)
    with open(text_file, 'r+b') as f:
        f.write(b'SCRIBBLED')
    with open(text_file, 'rb') as f:
        return f.read().decode()
