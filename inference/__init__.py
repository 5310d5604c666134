"""The CNN and nothing clinical: preprocessing, the network, serving, training and model versions.

Never imports `cases`. The web process imports only the light modules (preprocessing, models,
services); TensorFlow is loaded by the predictor and training, in workers and commands.
"""
