"""Training: configuration, input pipeline, augmentation, balancing, the training loop."""
