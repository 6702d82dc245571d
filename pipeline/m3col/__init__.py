"""M3CoL: multimodal mixup-contrastive fusion classification (image + caption, speech + transcript)."""
