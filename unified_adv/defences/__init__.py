"""Defences: the layers put in front of a model (randomization, autoencoder, ART preprocessors) and the defended variants of a run."""
