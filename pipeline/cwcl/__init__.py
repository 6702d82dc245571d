"""CWCL cross-modal transfer: a trainable encoder aligned to a frozen pretrained tower (Srinivasa et al. 2023)."""
