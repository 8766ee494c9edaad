"""The study layer: crash-safe persistence of an optimizer's points and state.

Modules, lowest first: ``errors`` (:class:`StudyError`), ``codec`` (tensors as bytes, nested
state as JSON + tensors), ``points`` (the point record and the views built from points),
``folder`` (layout on disk, fsync, the writer lock, links, stale creations), ``schema``
(tables, row checksums, metadata types), ``store`` (:class:`StudyStore`: the on-disk format
and its durability rules) and ``persist`` (an optimizer saved to and loaded from a study).
"""
