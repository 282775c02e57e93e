out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
cache = {}
