"""Image data for the cross-modal, fusion, generative and debiasing tracks.

- :mod:`.imageset`: the in-memory set every source produces and the on-disk format of a prepared split.
- the embedded sources (procedurally rendered shapes with captions and masks; coloured handwritten digits)
  and the readers of real datasets (MNIST, CIFAR, image folders, image-caption files) live beside it.
"""
