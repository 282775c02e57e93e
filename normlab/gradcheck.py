"""Relative error and centred-difference numerical gradients, as in CS231n assignment 2."""
import numpy as np


def rel_error(x, y):
    """Largest elementwise relative error max(|x - y| / max(1e-8, |x| + |y|))."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def perturbations(x, h):
    """Copies of x with one element moved by +h and by -h: an array of shape (x.size, 2, *x.shape)."""
    steps = np.eye(x.size, dtype=x.dtype).reshape((x.size,) + x.shape) * h
    return np.stack([x + steps, x - steps], axis=1)


def numerical_gradient_from_outputs(outputs, dout, h):
    """Centred differences of sum(f * dout) from f evaluated at perturbations(x, h), shaped like x."""
    outputs = np.asarray(outputs, dtype=np.float64)
    plus, minus = outputs[:, 0], outputs[:, 1]
    axes = tuple(range(1, plus.ndim))
    return np.sum((plus - minus) * dout, axis=axes) / (2 * h)


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numerical gradient of sum(f(x) * df) with respect to x. x is left unchanged.

    f takes an array shaped like x and returns an array shaped like df.
    """
    x = np.asarray(x, dtype=np.float64)
    moved = perturbations(x, h)
    outputs = [[f(plus), f(minus)] for plus, minus in moved]
    return numerical_gradient_from_outputs(outputs, df, h).reshape(x.shape)
