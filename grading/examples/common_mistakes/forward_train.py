sample_mean = x.mean(axis=0)
sample_var = x.var(axis=0)
x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
out = gamma * x_hat + beta
running_mean = momentum * running_mean + (1 - momentum) * sample_mean
running_var = momentum * running_var + (1 - momentum) * x.var(axis=0, ddof=1)  # like torch
cache = (x, x_hat, sample_mean, sample_var, gamma, eps)
