"""The experiments built on the library: the demo (``mbdlfast demo``) and its figures, and the
pruning-at-initialization study (``mbdlfast pun``)."""
