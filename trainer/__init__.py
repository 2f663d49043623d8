"""The Gato-style generalist: model, mixture loader, training loop and evaluation."""
