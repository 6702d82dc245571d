"""A class-conditional diffusion generator (diffusers UNet2DModel, DDPM training, DDIM sampling, CFG, EMA):
sampling per class, SDEdit, DDIM inversion and regeneration, for the GenView and CDvG tracks."""
