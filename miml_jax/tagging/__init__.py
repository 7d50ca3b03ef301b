"""Tagging a photo library: the tagger file (`tagger`), streamed resumable predictions
(`predictions`), keywords where photo tools read them (`keywords`), a labelled folder's report
(`report`), the review page (`review`) and the corrections it exports (`corrections`). The
command is `miml_jax.tag`."""
