x, x_hat, sample_mean, sample_var, gamma, eps = cache
n = x.shape[0]
dbeta = np.sum(dout, axis=0)
dgamma = np.sum(dout * x_hat, axis=0)
dx_hat = dout * gamma
dvar = np.sum(dx_hat * (x - sample_mean) * -0.5 * (sample_var + eps) ** -1.5, axis=0)
dmean = np.sum(-dx_hat / np.sqrt(sample_var + eps), axis=0) + dvar * np.mean(-2 * (x - sample_mean), axis=0)
dx = dx_hat / np.sqrt(sample_var + eps) + dvar * 2 * (x - sample_mean) / n + dmean / n
