"""The generic training loop every trained method shares (step plan, seeding, checkpoints,
precision, history, progress); methods supply a network, an objective and a batch source."""
