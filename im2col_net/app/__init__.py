"""The application around the engine: the ``im2col-net`` command line (:mod:`.cli`), the
benchmark (:mod:`.bench`, :mod:`.bench_torch`), pictures of a run (:mod:`.plotting`)
and image-file reading for ``predict`` (:mod:`.imageio`).

A thin shell: it may import any part of the engine, and nothing outside this package
imports it (``python -m im2col_net`` aside), so the library works without it.
"""
