mean = x.mean(axis=0)
centered = x - mean
var = (centered ** 2).mean(axis=0)
std = np.sqrt(var + eps)
normalized = centered / std
out = gamma * normalized + beta
running_mean = momentum * running_mean + (1 - momentum) * mean
running_var = momentum * running_var + (1 - momentum) * var
cache = {"normalized": normalized, "std": std, "gamma": gamma}
