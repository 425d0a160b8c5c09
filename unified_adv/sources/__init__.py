"""Where models and data come from: the model wrapper and loaders, data sets, the synthetic line images, and the shipped builtin weights."""
