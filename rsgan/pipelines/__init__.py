"""Pipelines that compose rsgan's pieces: whole-scene translation, catalogs, augmentation.

Import the functions from their modules (``rsgan.pipelines.translate``, ...) or from
``rsgan`` itself; this package does not import them eagerly, so importing one pipeline
does not pull in the dependencies of the others (e.g. Dask).
"""
