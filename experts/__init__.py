"""Expert policies per task: RLlib checkpoints, scripted policies and random ones."""
