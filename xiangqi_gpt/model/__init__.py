"""The GPT: model, checkpoints, training (LightningModule, data module, CLI) and evaluation."""
