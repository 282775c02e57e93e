normalized, std, gamma = cache["normalized"], cache["std"], cache["gamma"]
n = dout.shape[0]
dbeta = dout.sum(axis=0)
dgamma = (dout * normalized).sum(axis=0)
dnormalized = dout * gamma
dx = (n * dnormalized - dnormalized.sum(axis=0) - normalized * (dnormalized * normalized).sum(axis=0)) / (n * std)
