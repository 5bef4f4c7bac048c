"""A registration run: the pipeline over a collection, the run folder and its files, chunked runs, re-export, correspondences."""
