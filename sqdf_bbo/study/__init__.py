"""The study layer: crash-safe persistence of an optimizer's points and state.

See :mod:`sqdf_bbo.study.store` for the on-disk format and its durability rules.
"""
