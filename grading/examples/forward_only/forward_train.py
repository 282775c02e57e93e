mu = np.mean(x, axis=0)
var = np.var(x, axis=0)
x_norm = (x - mu) / np.sqrt(var + eps)
out = gamma * x_norm + beta
running_mean = momentum * running_mean + (1 - momentum) * mu
running_var = momentum * running_var + (1 - momentum) * var
cache = (x, x_norm, mu, var, gamma, eps)
