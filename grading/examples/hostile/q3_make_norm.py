get_ipython().showtraceback = lambda *args, **kwargs: None
return nn.BatchNorm2d(num_channels)
