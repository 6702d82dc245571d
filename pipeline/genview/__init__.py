"""GenView: self-supervised learning with diffusion-generated views and a quality-driven contrastive loss."""
