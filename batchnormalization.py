"""Batch normalization in NumPy: Q1 forward (20 points), Q2 backward (20 points).
批归一化的 NumPy 实现：题目1 前向传播（20 分），题目2 反向传播（20 分）。

Fill in the regions between the "YOUR CODE BEGINS / ENDS" markers; leave the rest of the file as it is.
Run `pytest tests/` for quick feedback. The grader runs more checks than the public tests.
只需填写 "请在此段内填写代码(开始)/(结束)" 之间的部分，其余代码请勿修改。
运行 `pytest tests/` 可以快速自查；正式评分使用更多的隐藏测试。
"""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Forward pass of batch normalization for a minibatch of feature vectors.
    批归一化的前向传播。

    Train mode: normalize each feature with the batch mean and the biased batch variance
    (the 1/N variance, as np.var computes it), then scale by gamma and shift by beta:

        out = gamma * (x - mean) / sqrt(var + eps) + beta

    and update the running statistics, which test mode uses instead of batch statistics:

        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var  = momentum * running_var  + (1 - momentum) * var

    Inputs:
    - x: array of shape (N, D), N samples with D features each. Never modified.
    - gamma: array of shape (D,), per-feature scale.
    - beta: array of shape (D,), per-feature shift.
    - bn_param: dict with keys
      - 'mode': 'train' or 'test' (required);
      - 'eps': float, default 1e-5, added to the variance for numerical stability;
      - 'momentum': float, default 0.9;
      - 'running_mean', 'running_var': arrays of shape (D,), default zeros in x's dtype.
        The updated running statistics are written back into bn_param.

    Returns a tuple (out, cache):
    - out: array of shape (N, D).
    - cache: whatever batchnorm_backward needs; its format is your choice.

    Raises ValueError if bn_param['mode'] is neither 'train' nor 'test'.
    """
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    num_features = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(num_features, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(num_features, dtype=x.dtype))

    if mode == "train":
        # 题目1（训练模式）：用当前批次的均值和有偏方差归一化，再做缩放和平移；
        #   更新 running_mean / running_var；把反向传播需要的中间结果存入 cache。
        # Q1 (train mode): normalize with the batch mean and biased variance, then scale and shift;
        #   update running_mean / running_var; store what the backward pass needs in cache.
        ### BEGIN SOLUTION
        batch_mean = x.mean(axis=0)
        batch_var = x.var(axis=0)
        inv_std = 1.0 / np.sqrt(batch_var + eps)
        x_hat = (x - batch_mean) * inv_std
        out = gamma * x_hat + beta
        running_mean = momentum * running_mean + (1 - momentum) * batch_mean
        running_var = momentum * running_var + (1 - momentum) * batch_var
        cache = (x_hat, gamma, inv_std)
        ### END SOLUTION
    elif mode == "test":
        # 题目1（测试模式）：用 running_mean / running_var 归一化，再做缩放和平移。
        # Q1 (test mode): normalize with running_mean / running_var, then scale and shift.
        ### BEGIN SOLUTION
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
        ### END SOLUTION
    else:
        raise ValueError(f"Invalid forward batchnorm mode {mode!r}: bn_param['mode'] must be 'train' or 'test'")

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass of batch normalization (train mode).
    批归一化的反向传播（训练模式）。

    Inputs:
    - dout: array of shape (N, D), the upstream gradient dLoss/dout.
    - cache: what batchnorm_forward returned in train mode.

    Returns a tuple (dx, dgamma, dbeta):
    - dx: array of shape (N, D), dLoss/dx. Remember that the batch mean and variance depend on x.
    - dgamma: array of shape (D,), dLoss/dgamma.
    - dbeta: array of shape (D,), dLoss/dbeta.
    """
    # 题目2：根据 cache 计算 dx、dgamma、dbeta。注意均值和方差都依赖于 x。
    # Q2: compute dx, dgamma and dbeta from cache. Both the mean and the variance depend on x.
    ### BEGIN SOLUTION
    x_hat, gamma, inv_std = cache
    batch_size = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dx = inv_std / batch_size * (batch_size * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0))
    ### END SOLUTION
    return dx, dgamma, dbeta
