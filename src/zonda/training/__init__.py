"""Training stage: data module, LightningModule, losses, optimizers, schedulers."""
