"""CDvG: contrastive debiasing with diffusion bias-transformed views, against ERM and LfF."""
